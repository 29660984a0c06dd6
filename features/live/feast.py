"""Pushing live rows to a Feast push source (:func:`feast_pusher`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from features.live.writer import PushFn

__all__ = ["feast_pusher"]



# --- Feast ---------------------------------------------------------------------------------------------


def feast_pusher(store: Any, view: str, key: str, time_field: str, push_source: str | None = None) -> PushFn:
    """``push(rows)``: write rows to Feast view ``view`` of ``store`` (an open
    ``FeatureStore``) in one call. Columns: ``key``, ``event_timestamp`` (from
    ``time_field``, epoch seconds) and the view's features; a feature a row lacks is
    null, a row's field the view lacks is left out.

    By default through ``store.write_to_online_store(view, df)``; with
    ``push_source``, ``store.push(push_source, df, to=PushMode.ONLINE)`` (which writes
    every view fed by that source, and re-reads the registry on every call: slower,
    and it slows the next lookups of the same store, see ``../shared/notes/feast.md``).
    """
    import pandas as pd

    fv = store.get_feature_view(view)
    names = [f.name for f in fv.features]
    columns = [key, "event_timestamp", *names]
    if push_source is not None:
        from feast.data_source import PushMode

    def push(rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        data = {key: [r[key] for r in rows],
                "event_timestamp": [datetime.fromtimestamp(r[time_field], timezone.utc) for r in rows]}
        for n in names:
            data[n] = [r.get(n) for r in rows]
        df = pd.DataFrame(data, columns=columns)
        if push_source is None:
            store.write_to_online_store(view, df)
        else:
            store.push(push_source, df, to=PushMode.ONLINE)

    return push
