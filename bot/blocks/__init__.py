"""Block Kit builders, apart from the listeners that send them.

Each module keeps the callback and action ids it puts on the wire beside the function that
parses them back, so a renamed id cannot leave a listener listening for the old one.
"""
