"""A small demo hospital: two departments, three doctors, morning and afternoon sessions for
a week from a given date, each band with an on-site pool and platform pools.

Pools: "onsite" (window only), "shared" (sold by both guahao and partner: one pool, two
channels) and "guahao" (guahao only). Pre-seeded patient records use obviously fake IDs.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

PLATFORMS = ("guahao", "partner")
BANDS = {"am": [("08:00", "09:00"), ("09:00", "10:00"), ("10:00", "11:30")],
         "pm": [("13:30", "15:00"), ("15:00", "16:30")]}
POOLS = {"onsite": 4, "shared": 6, "guahao": 2}


def demo(start: dt.date, days: int = 7) -> dict[str, Any]:
    doctors = [{"code": "D001", "dept": "NEI", "name": "王医生", "title": "主任医师"},
               {"code": "D002", "dept": "NEI", "name": "李医生", "title": "主治医师"},
               {"code": "D003", "dept": "ERK", "name": "张医生", "title": "副主任医师"}]
    sessions = []
    for n in range(days):
        day = (start + dt.timedelta(days=n)).isoformat()
        for doc in doctors:
            for half, bands in BANDS.items():
                sid = f"S-{day}-{doc['code']}-{half}"
                sessions.append({"id": sid, "doctor": doc["code"], "date": day, "half": half,
                                 "bands": [{"id": f"{sid}-{i}", "start": a, "end": b, "pools": dict(POOLS)}
                                           for i, (a, b) in enumerate(bands, start=1)]})
    return {"departments": [{"code": "NEI", "name": "内科"}, {"code": "ERK", "name": "儿科"}],
            "doctors": doctors,
            "channels": {"shared": list(PLATFORMS), "guahao": ["guahao"]},
            "sessions": sessions,
            "patients": [{"id_number": "110101199001010000", "name": "测试甲"},
                         {"id_number": "110101198502020000", "name": "测试乙"}]}
