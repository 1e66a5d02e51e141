"""salesbot: a consultative-selling assistant for WeChat / WeCom work accounts."""

__version__ = "0.1.0"
