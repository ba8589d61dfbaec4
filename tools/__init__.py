"""smilebot_tools: the desktop side of smilebot.

Data, training, conversion, evaluation, benchmarks.
"""
