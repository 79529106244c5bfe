"""Format adapters: turn a platform's raw webhook into oms's canonical inbound events."""

from __future__ import annotations

from oms.webhooks.inbound.adapters.base import Adapter


def get_adapter(fmt: str) -> Adapter:
    """The adapter for a connector's ``format`` (oms, shopify, woocommerce)."""
    from oms.webhooks.inbound.adapters.oms import OmsAdapter
    from oms.webhooks.inbound.adapters.shopify import ShopifyAdapter
    from oms.webhooks.inbound.adapters.woocommerce import WooCommerceAdapter

    adapters: dict[str, Adapter] = {
        "oms": OmsAdapter(),
        "shopify": ShopifyAdapter(),
        "woocommerce": WooCommerceAdapter(),
    }
    return adapters[fmt]
