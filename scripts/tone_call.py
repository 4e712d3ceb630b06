"""Dial a room, stream a tone for a while, hang up, and print the frequencies heard.

.venv/bin/python scripts/tone_call.py --room demo --tone 440 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio

from bridge.media.tones import dominant_frequencies
from bridge.tools.phone import Phone


async def main(args: argparse.Namespace) -> int:
    phone = Phone(
        args.host, args.port, args.room, tone_hz=args.tone or None, codec=args.codec, user=args.user
    )
    status = await phone.call()
    print(f"call status {status}")
    if status != 200:
        await phone.close()
        return 1
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(args.seconds)
    await phone.hangup()
    heard = phone.audio(start + 0.5)
    peaks = [round(f) for f in dominant_frequencies(heard, count=5)] if len(heard) else []
    print(
        f"sent {phone.sent_packets} packets, received {phone.received_packets}; "
        f"heard frequencies (Hz): {peaks or 'silence'}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5060)
    parser.add_argument("--room", default="demo")
    parser.add_argument("--tone", type=float, default=440.0, help="Hz; 0 sends silence")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--codec", choices=["PCMU", "PCMA"], default="PCMU")
    parser.add_argument("--user", default="tonecall")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
