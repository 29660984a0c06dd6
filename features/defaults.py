"""The flows' default policy values, in one place: the settings' defaults
(:mod:`settings.config`) and the classes' own defaults both read them here. A module of
numbers only: it imports nothing, so reading the settings stays cheap.

>>> LATENESS_S, IDLE_EXPIRY_S / 86_400, DEDUP_HORIZON_S, DEDUP_MAX_IDS
(600.0, 30.0, 3600.0, 256)
"""

__all__ = ["LATENESS_S", "IDLE_EXPIRY_S", "IOT_IDLE_EXPIRY_S", "MIN_AMOUNT", "MAX_AMOUNT", "DEDUP_HORIZON_S",
           "DEDUP_MAX_IDS"]

#: How late (event time, seconds) an event may be and still get exact windows
#: (``state.lateness_s``).
LATENESS_S = 600.0
#: A customer idle this long (event time, seconds) starts afresh (``fraud.idle_expiry_s``).
IDLE_EXPIRY_S = 30 * 86_400.0
#: A device idle this long starts afresh (``iot.idle_expiry_s``).
IOT_IDLE_EXPIRY_S = 7 * 86_400.0
#: Amounts must be above this (exclusive; ``fraud.min_amount``).
MIN_AMOUNT = 0.0
#: Amounts above this are refused as absurd: a unit or parsing error upstream, not a
#: purchase (``fraud.max_amount``).
MAX_AMOUNT = 1e9
#: A re-delivered id within this much event time of the key's newest event, among its
#: last ``DEDUP_MAX_IDS`` ids, is a duplicate (``state.dedup_horizon_s``, ``state.dedup_max_ids``).
DEDUP_HORIZON_S = 3600.0
DEDUP_MAX_IDS = 256
