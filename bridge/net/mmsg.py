"""Many UDP datagrams per system call: Linux `recvmmsg`/`sendmmsg` through ctypes.

Why ctypes: the standard library has neither call; ctypes reaches libc with no build step and
no new dependency (cffi would be one, a C extension a compiler and a build in set-up), and its
~1 us per call is paid once per batch of up to hundreds of datagrams, not per datagram. The
message headers, their iovecs and the addresses live in numpy arrays laid out as the kernel's
structs (x86-64 and other LP64 Linux), so a batch's lengths, sources and destinations are read
and written as arrays, with no Python object per datagram.

IPv4 only (the load generator's and the tests' loopback). `BatchSocket` never raises on a send
or receive error: a full send buffer sends what it can (the rest is counted as dropped), ICMP
errors from a vanished peer are skipped, so one bad peer never closes the socket.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import socket
import sys
import time

import numpy as np

from bridge.rtp import native

if sys.platform != "linux" or ctypes.sizeof(ctypes.c_void_p) != 8:  # pragma: no cover
    raise ImportError("bridge.net.mmsg needs 64-bit Linux (recvmmsg/sendmmsg)")

_libc = ctypes.CDLL(None, use_errno=True)
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
_recvmmsg.restype = ctypes.c_int
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
_sendmmsg.restype = ctypes.c_int
MSG_DONTWAIT = 0x40

# struct mmsghdr { struct msghdr msg_hdr; unsigned msg_len; } on LP64: 64 bytes
MMSGHDR = np.dtype(
    {
        "names": ["name", "namelen", "iov", "iovlen", "control", "controllen", "flags", "len"],
        "formats": ["<u8", "<u4", "<u8", "<u8", "<u8", "<u8", "<i4", "<u4"],
        "offsets": [0, 8, 16, 24, 32, 40, 48, 56],
        "itemsize": 64,
    }
)
IOVEC = np.dtype({"names": ["base", "len"], "formats": ["<u8", "<u8"], "itemsize": 16})
# struct sockaddr_in: family (host order), port and address (network order), 8 zero bytes
SOCKADDR_IN = np.dtype(
    {
        "names": ["family", "port", "addr"],
        "formats": ["<u2", ">u2", ">u4"],
        "offsets": [0, 2, 4],
        "itemsize": 16,
    }
)


def ipv4(host: str) -> int:
    """A dotted IPv4 address as the integer SOCKADDR_IN's `addr` holds."""
    return int.from_bytes(socket.inet_aton(host), "big")


def buffer_address(array: np.ndarray) -> int:
    """Where an array's data starts in memory (for iovecs pointing into it)."""
    return int(array.__array_interface__["data"][0])


# a control message holding SCM_TIMESTAMPNS: cmsghdr (len, level, type), then a timespec
CONTROL = np.dtype(
    {
        "names": ["len", "level", "type", "sec", "nsec"],
        "formats": ["<u8", "<i4", "<i4", "<i8", "<i8"],
        "offsets": [0, 8, 12, 16, 24],
        "itemsize": 64,
    }
)
SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS
IP_PKTINFO = 8  # level IPPROTO_IP (0)
# a control message holding struct in_pktinfo (ifindex, spec_dst, addr), at `at` bytes into a
# message's 64-byte control area: first when sending, after the time stamp when receiving
def _pktinfo(at: int) -> np.dtype:
    return np.dtype(
        {
            "names": ["len", "level", "type", "ifindex", "spec_dst", "addr"],
            "formats": ["<u8", "<i4", "<i4", "<i4", ">u4", ">u4"],
            "offsets": [at, at + 8, at + 12, at + 16, at + 20, at + 24],
            "itemsize": 64,
        }
    )


PKTINFO_FIRST, PKTINFO_SECOND = _pktinfo(0), _pktinfo(32)


class _Batch:
    """`count` message headers, each with one iovec of `size` bytes into `data`, an address
    and room for one control message (the kernel's receive time stamp)."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size
        self.data = np.zeros((count, size), np.uint8)
        self.names = np.zeros(count, SOCKADDR_IN)
        self.iovecs = np.zeros(count, IOVEC)
        self.headers = np.zeros(count, MMSGHDR)
        at = np.arange(count, dtype=np.uint64)
        self.aim_at_rows()
        self.iovecs["len"] = size
        self.headers["name"] = buffer_address(self.names) + 16 * at
        self.headers["namelen"] = 16
        self.headers["iov"] = buffer_address(self.iovecs) + 16 * at
        self.headers["iovlen"] = 1
        self.controls = np.zeros(count, CONTROL)
        self.headers["control"] = buffer_address(self.controls) + 64 * at
        self.pointer = buffer_address(self.headers)

    def aim_at_rows(self) -> None:
        """Each message's iovec at its own row of `data`."""
        rows = np.arange(self.count, dtype=np.uint64)
        self.iovecs["base"] = buffer_address(self.data) + self.size * rows


class BatchSocket:
    """A non-blocking IPv4 UDP socket read and written in batches.

    `receive()` takes every datagram waiting (up to `batch`) in one call: their bytes are the
    first rows of `rx.data`, their lengths `rx.headers["len"]`, their sources `rx.names`, and
    with `timestamps=True` the kernel's arrival time of each (`arrivals`), so reading late
    in batches does not blur what a receiver measures.
    `send(rows, hosts, ports, lengths)` sends rows of a caller-filled `tx.data` in one call.
    """

    def __init__(
        self, sock: socket.socket, batch: int = 256, size: int = 2048, timestamps: bool = False
    ) -> None:
        if sock.family != socket.AF_INET or sock.type != socket.SOCK_DGRAM:
            raise ValueError("BatchSocket takes an IPv4 UDP socket")
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.batch = batch
        self.rx = _Batch(batch, size)
        self.tx = _Batch(batch, size)
        self.tx.names["family"] = socket.AF_INET
        self.timestamps = timestamps
        self.compiled = native.wanted()  # `stamps` in C (`bridge.rtp.native`)
        if timestamps:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.pktinfo = False  # `with_pktinfo`: per-datagram local addresses both ways
        self._aimed_elsewhere = False  # tx's iovecs point into a `send_from` caller's buffer
        self.sent = 0
        self.dropped = 0  # datagrams a full send buffer (or a bad destination) refused
        self.receive_errors = 0

    def with_pktinfo(self) -> None:
        """Each received datagram's destination address (`destinations`), and sends from a
        chosen local address per datagram (`send(..., sources=)`): one socket bound to the
        wildcard address standing for many local addresses (the load generator's calls)."""
        self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.pktinfo = True
        sending = self.tx.controls.view(PKTINFO_FIRST)
        sending["len"], sending["level"], sending["type"] = 28, socket.IPPROTO_IP, IP_PKTINFO

    def receive(self) -> int:
        """Read up to `batch` waiting datagrams; how many (0 when none were waiting)."""
        rx = self.rx
        rx.headers["namelen"] = 16
        rx.headers["controllen"] = 64 if self.timestamps or self.pktinfo else 0
        for _ in range(8):  # an ICMP error (ECONNREFUSED...) is reported once: read on
            count = _recvmmsg(self.fd, rx.pointer, rx.count, MSG_DONTWAIT, None)
            if count >= 0:
                return count
            error = ctypes.get_errno()
            if error in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            if error != errno.EINTR:
                self.receive_errors += 1
        return 0

    def send(
        self,
        count: int,
        hosts: np.ndarray,
        ports: np.ndarray,
        lengths: np.ndarray,
        sources: np.ndarray | None = None,
    ) -> int:
        """Send rows 0..count-1 of `tx.data` (`lengths` bytes each) to `hosts`/`ports`
        (integers, as `ipv4` gives), from local addresses `sources` if given (`with_pktinfo`);
        returns how many went."""
        tx = self.tx
        if count > tx.count:
            raise ValueError(f"at most {tx.count} datagrams per send")
        if self._aimed_elsewhere:  # at a caller's buffer since `send_from`: back to tx.data
            tx.aim_at_rows()
            self._aimed_elsewhere = False
        return self._send(count, hosts, ports, lengths, sources)

    def _send(
        self,
        count: int,
        hosts: np.ndarray,
        ports: np.ndarray,
        lengths: np.ndarray,
        sources: np.ndarray | None = None,
    ) -> int:
        tx = self.tx
        tx.names["addr"][:count] = hosts
        tx.names["port"][:count] = ports
        tx.iovecs["len"][:count] = lengths
        if sources is not None:
            tx.controls.view(PKTINFO_FIRST)["spec_dst"][:count] = sources
        tx.headers["controllen"][:count] = 32 if sources is not None else 0
        done = 0
        while done < count:
            sent = _sendmmsg(self.fd, tx.pointer + 64 * done, count - done, MSG_DONTWAIT)
            if sent > 0:
                done += sent
                continue
            error = ctypes.get_errno() if sent < 0 else 0
            if error == errno.EINTR:
                continue
            if sent < 0 and error not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                done += 1  # this one datagram is refused (a bad address): skip it, send on
                self.dropped += 1
                continue
            self.dropped += count - done  # the buffer is full: drop the rest, never block
            break
        self.sent += done
        return done

    def send_from(
        self,
        blob: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        hosts: np.ndarray,
        ports: np.ndarray,
    ) -> int:
        """Send datagrams that lie back to back in `blob` (bytes `offsets[i]` on, `lengths[i]`
        long) without copying them into `tx.data`. How many went."""
        starts = buffer_address(blob) + offsets.astype(np.uint64)
        return self.send_at(starts, lengths, hosts, ports)

    def send_at(
        self, starts: np.ndarray, lengths: np.ndarray, hosts: np.ndarray, ports: np.ndarray
    ) -> int:
        """Send datagrams from memory the caller holds (`starts`: addresses, as
        `buffer_address` gives, of buffers it keeps alive for the call: the send is
        synchronous), in batches of up to `batch` per system call. The iovecs point there
        and stay so until a `send` needs `tx.data` again. How many went."""
        tx = self.tx
        self._aimed_elsewhere = True
        done = 0
        for first in range(0, len(starts), tx.count):
            last = first + tx.count
            count = len(starts[first:last])
            tx.iovecs["base"][:count] = starts[first:last]
            done += self._send(count, hosts[first:last], ports[first:last], lengths[first:last])
        return done

    def sources(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The (addr, port) integer arrays of the last `receive`'s first `count` datagrams."""
        names = self.rx.names[:count]
        return names["addr"], names["port"]

    def destinations(self, count: int) -> np.ndarray:
        """The local address each of the last `receive`'s datagrams was sent to (`with_pktinfo`;
        0 where the kernel gave none)."""
        controls = self.rx.controls[:count]
        found = np.zeros(count, np.uint32)
        for layout in (PKTINFO_SECOND, PKTINFO_FIRST):  # after a time stamp, or alone
            info = controls.view(layout)
            here = (info["level"] == socket.IPPROTO_IP) & (info["type"] == IP_PKTINFO)
            found = np.where(here & (found == 0), info["addr"], found)
        return found

    def lengths(self, count: int) -> np.ndarray:
        return self.rx.headers["len"][:count]

    def arrivals(self, count: int) -> np.ndarray:
        """CLOCK_REALTIME seconds the kernel received each of the last `receive`'s datagrams
        (NaN where it gave none: `timestamps` off)."""
        controls = self.rx.controls[:count]
        seconds = controls["sec"] + controls["nsec"] * 1e-9
        stamped = (
            (self.rx.headers["controllen"][:count] >= 32)
            & (controls["level"] == socket.SOL_SOCKET)
            & (controls["type"] == SO_TIMESTAMPNS)
        )
        return np.where(stamped, seconds, np.nan)

    def stamps(self, count: int, to_clock: float) -> tuple[np.ndarray, np.ndarray]:
        """The last `receive`'s lengths (int64) and arrival times moved to another clock
        (`to_clock` added; where the kernel gave none, now on that clock): one compiled call
        when built (`bridge.rtp.native`), else as `lengths` and `arrivals`."""
        fallback = time.time() + to_clock
        if self.compiled:
            lengths = np.empty(count, np.int64)
            arrivals = np.empty(count, np.float64)
            native.module().stamps(
                count, self.rx.headers, self.rx.controls, to_clock, fallback, lengths, arrivals
            )
            return lengths, arrivals
        arrivals = self.arrivals(count) + to_clock
        arrivals = np.where(np.isnan(arrivals), fallback, arrivals)
        return self.lengths(count).astype(np.int64), arrivals

    def close(self) -> None:
        self.sock.close()


SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33


def set_buffers(sock: socket.socket, size: int = 32 << 20) -> None:
    """Ask for large kernel buffers: one socket carrying thousands of calls must ride out a
    stall of its reader. Past net.core.[rw]mem_max only with CAP_NET_ADMIN (the *FORCE
    options); else the kernel caps the plain request at that maximum."""
    for forced, option in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, size)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, size)
