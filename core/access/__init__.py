"""WeChat access: signatures and crypto, XML, messages and replies, the webhook, the WeChat API client."""
