"""An OpenADR 2.0b VTN for adit's tests: openleadr's own server, driven over a small JSON
control API so a test can send, modify and cancel events, silence the VTN, and read back
what the VEN told it (registrations, opt-ins and -outs, report values, every message type).

Usage: python3 openadr_vtn.py VTN_PORT CONTROL_PORT [CERT KEY CA]
With CERT, KEY and CA the VTN serves HTTPS and requires a client certificate signed by CA.
"""

import asyncio
import json
import sys
from datetime import datetime, timedelta, timezone

from aiohttp import web
from openleadr import OpenADRServer, enums, hooks, objects, utils

VTN_PORT, CONTROL_PORT = int(sys.argv[1]), int(sys.argv[2])
TLS = dict(zip(["http_cert", "http_key", "http_ca_file"], sys.argv[3:6]))
VTN_ID = "adit-test-vtn"

seen = {"messages": [], "registrations": [], "opts": [], "reports": [], "report_offers": []}
silent = {"on": False}
events = {}  # event id -> (ven id, objects.Event)


def now():
    return datetime.now(timezone.utc)


async def on_message(message_type, payload):
    seen["messages"].append(message_type)
    if message_type == "oadrCreatedEvent":
        for r in payload.get("event_responses") or []:
            seen["opts"].append(
                {
                    "event_id": r.get("event_id"),
                    "modification_number": r.get("modification_number"),
                    "opt_type": r.get("opt_type"),
                }
            )


hooks.register("before_handle", on_message)


async def on_create_party_registration(info):
    ven_id = "ven-" + info["ven_name"]
    seen["registrations"].append(
        {"ven_name": info["ven_name"], "ven_id": ven_id, "fingerprint": info.get("fingerprint")}
    )
    return ven_id, "reg-" + info["ven_name"]


async def on_register_report(
    ven_id, resource_id, measurement, unit, scale, min_sampling_interval, max_sampling_interval
):
    seen["report_offers"].append(
        {"ven_id": ven_id, "resource_id": resource_id, "measurement": measurement, "unit": unit, "scale": scale}
    )

    async def got(values):
        for ts, value in values:
            seen["reports"].append({"ven_id": ven_id, "ts": ts.isoformat(), "value": value, "scale": scale})

    return got, timedelta(seconds=2)


async def silence(app, handler):
    async def middleware(request):
        if silent["on"]:
            await asyncio.sleep(3600)
        return await handler(request)

    return middleware


server = OpenADRServer(
    vtn_id=VTN_ID, http_port=VTN_PORT, requested_poll_freq=timedelta(seconds=1), **TLS
)
server.app.middlewares.append(silence)
server.add_handler("on_create_party_registration", on_create_party_registration)
server.add_handler("on_register_report", on_register_report)


def intervals(body):
    start = now() + timedelta(seconds=float(body.get("start_in_s", 0)))
    return [
        objects.Interval(
            dtstart=start,
            duration=timedelta(seconds=float(body.get("duration_s", 600))),
            signal_payload=float(body["value"]),
        )
    ]


def event_signal(body):
    signal = objects.EventSignal(
        intervals=intervals(body),
        signal_name=body.get("signal", "LOAD_DISPATCH"),
        signal_type=body.get("type", "setpoint"),
        signal_id="sig-" + body["event_id"],
    )
    if signal.signal_name == "LOAD_DISPATCH":
        signal.measurement = objects.Measurement(
            name="powerReal", description="RealPower", unit="W", scale="k",
            power_attributes=objects.PowerAttributes(hertz=50, voltage=230, ac=True),
        )
    return signal


async def add_event(request):
    body = await request.json()
    signal = event_signal(body)
    start = signal.intervals[0].dtstart
    ramp = body.get("ramp_up_s")
    event = objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id=body["event_id"], modification_number=0, market_context="oadr://adit.test/dr",
            event_status=enums.EVENT_STATUS.FAR, created_date_time=now(),
        ),
        active_period=objects.ActivePeriod(
            dtstart=start, duration=signal.intervals[0].duration,
            ramp_up_period=timedelta(seconds=ramp) if ramp else None,
        ),
        event_signals=[signal],
        targets=[objects.Target(ven_id=body["ven_id"])],
        response_required="always",
    )
    events[body["event_id"]] = (body["ven_id"], event)
    server.add_raw_event(ven_id=body["ven_id"], event=event)
    return web.json_response({"event_id": body["event_id"]})


async def modify_event(request):
    body = await request.json()
    ven_id, event = events[request.match_info["id"]]
    body["event_id"] = request.match_info["id"]
    first = utils.getmember(event, "event_signals")[0]
    signal = event_signal({**body, "signal": utils.getmember(first, "signal_name"),
                           "type": utils.getmember(first, "signal_type")})
    utils.setmember(event, "event_signals", [signal])
    utils.setmember(event, "active_period.dtstart", signal.intervals[0].dtstart)
    utils.setmember(event, "active_period.duration", signal.intervals[0].duration)
    utils.increment_event_modification_number(event)
    utils.setmember(event, "event_descriptor.modification_date_time", now())
    server.events_updated[ven_id] = True
    return web.json_response(
        {"modification_number": utils.getmember(event, "event_descriptor.modification_number")}
    )


async def cancel_event(request):
    event_id = request.match_info["id"]
    ven_id, event = events[event_id]
    server.cancel_event(ven_id, event_id)
    return web.json_response(
        {"modification_number": utils.getmember(event, "event_descriptor.modification_number")}
    )


async def set_silent(request):
    silent["on"] = bool((await request.json())["on"])
    return web.json_response(silent)


async def log(request):
    return web.json_response(seen)


async def main():
    await server.run()
    control = web.Application()
    control.add_routes([
        web.post("/events", add_event),
        web.post("/events/{id}/modify", modify_event),
        web.post("/events/{id}/cancel", cancel_event),
        web.post("/silence", set_silent),
        web.get("/log", log),
    ])
    runner = web.AppRunner(control)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", CONTROL_PORT).start()
    print("vtn ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
