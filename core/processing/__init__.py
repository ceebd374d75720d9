"""Processing: the bot's pipeline, its context, intents and router, the plugin contract and manager, segmentation."""
