"""pymesh's runtime layer: processes, nodes, connections, the port mapper, OTP behaviours.

Built on :mod:`pymesh.wire` (which it drives through thin asyncio adapters) and
used by :mod:`pymesh.services` and the faces. The public names are re-exported
from :mod:`pymesh`; import them from there.
"""
