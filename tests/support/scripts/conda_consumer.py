"""The air side's consumer: py-rattler solves (and installs) from one channel URL and nothing else.

Run as a script in its own process with proxies pointed at a closed port, so any attempt to
reach another host fails: ``python conda_consumer.py CHANNEL_URL PLATFORM PREFIX|- CACHE SPEC...``. Prints
the solved records as JSON lines; with a PREFIX it installs them there.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from rattler import Channel, ChannelConfig, Gateway, install, solve


async def main(channel: str, platform: str, prefix: str, specs: list[str], cache: str) -> None:
    ch = Channel(channel, ChannelConfig(channel_alias="http://127.0.0.1:9/"))
    gateway = Gateway(cache_dir=cache)
    virtual = []
    if platform.startswith(("linux", "osx")):
        from rattler import BuildString, GenericVirtualPackage, PackageName, Version

        virtual = [GenericVirtualPackage(PackageName("__unix"), Version("0"), BuildString("0"))]
    records = await solve([ch], specs, gateway=gateway, platforms=[platform, "noarch"], virtual_packages=virtual)
    for r in records:
        print(json.dumps({"name": r.name.normalized, "version": str(r.version), "build": str(r.build), "subdir": str(r.subdir),
                          "url": str(r.url)}))
    if prefix != "-":
        await install(records, prefix, cache_dir=cache + "/pkgs", show_progress=False)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5:], sys.argv[4]))
    # py-rattler 0.28's runtime threads can crash the interpreter's finalization ("PyGILState_Release:
    # thread state must be current") after all the work is done: leave without finalizing
    sys.stdout.flush()
    os._exit(0)
