"""Format adapters: turn a platform's raw webhook into oms's canonical inbound events."""
