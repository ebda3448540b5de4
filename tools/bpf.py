"""Kernel filters for the sniffer's packet socket, so that other traffic on the interface (a load
test, another test suite) never fills its buffer or costs it Python time:

- ``udp_ports_program``: ``--port``, a classic BPF program written here (needs no libpcap);
- ``compile_expression``: ``-f``, a tcpdump/tshark capture filter compiled by libpcap (through
  Scapy), also usable on the frames of a capture file (``Expression.matches``).

The ``--port`` program, for Ethernet framing (``lo`` and Ethernet interfaces), ports P1..Pn:

    ld  pkttype          ; drop the outgoing copy (the kernel's, not ours to compare bytes)
    jeq #OUTGOING  drop
    ldh [12]             ; EtherType
    jeq #IPv6      v6
    jne #IPv4      drop
    ldb [23]             ; IP protocol
    jne #UDP       drop
    ldh [20]             ; a fragment after the first has no UDP header
    jset #0x1fff   drop
    ldxb 4*([14]&0xf)    ; X = IP header length
    ja  ports
v6: ldb [20]             ; next header (a datagram behind extension headers is not kept)
    jne #UDP       drop
    ldx #40              ; X = IPv6 header length
ports:
    ldh [x+14]           ; source port:      keep if one of P1..Pn
    ldh [x+16]           ; destination port: keep if one of P1..Pn
    drop: ret #0 / keep: ret #SNAPLEN
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = 26
SKF_AD_PKTTYPE = -0x1000 + 4  # ancillary load: the packet's type (PACKET_OUTGOING, ...)
PACKET_OUTGOING = 4
SNAPLEN = 0x40000  # bytes kept of a packet that passes: all of it (a datagram is at most 64 KiB)
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
DLT_EN10MB = 1  # libpcap's link type for Ethernet framing (what lo has in a packet socket)

# opcodes (linux/filter.h)
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS, _LD_H_IND, _LDX_B_MSH, _LDX_IMM = 0x20, 0x28, 0x30, 0x48, 0xB1, 0x01
_JA, _JEQ, _JSET, _RET = 0x05, 0x15, 0x45, 0x06


def udp_ports_program(ports: list[int]) -> list[tuple[int, int, int, int]]:
    """The instructions (code, jt, jf, k) of the program above for ``ports`` (1 to 100 of them)."""
    if not 1 <= len(ports) <= 100:  # conditional jump offsets are 8 bits
        raise ValueError("between 1 and 100 ports")
    # Targets by name: "drop", "keep", "v6", "ports"; 0 is the next instruction.
    head = [
        (_LD_W_ABS, 0, 0, SKF_AD_PKTTYPE & 0xFFFFFFFF),
        (_JEQ, "drop", 0, PACKET_OUTGOING),
        (_LD_H_ABS, 0, 0, 12),
        (_JEQ, "v6", 0, ETH_IPV6),
        (_JEQ, 0, "drop", ETH_IPV4),
        (_LD_B_ABS, 0, 0, 23),
        (_JEQ, 0, "drop", socket.IPPROTO_UDP),
        (_LD_H_ABS, 0, 0, 20),
        (_JSET, "drop", 0, 0x1FFF),
        (_LDX_B_MSH, 0, 0, 14),
        (_JA, 0, 0, "ports"),
    ]
    v6 = [
        (_LD_B_ABS, 0, 0, 20),
        (_JEQ, 0, "drop", socket.IPPROTO_UDP),
        (_LDX_IMM, 0, 0, 40),
    ]
    body = []
    for offset in (14, 16):  # source port, then destination port
        body.append((_LD_H_IND, 0, 0, offset))
        body.extend((_JEQ, "keep", 0, port) for port in ports)
    program = head + v6 + body + [(_RET, 0, 0, 0), (_RET, 0, 0, SNAPLEN)]
    at_of = {"v6": len(head), "ports": len(head) + len(v6), "drop": len(program) - 2, "keep": len(program) - 1}
    out = []
    for at, (code, jt, jf, k) in enumerate(program):
        # offsets count from the next instruction
        jt, jf, k = (at_of[x] - at - 1 if isinstance(x, str) else x for x in (jt, jf, k))
        out.append((code, jt, jf, k))
    assert all(0 <= jt <= 255 and 0 <= jf <= 255 for _, jt, jf, _ in out)
    return out


def attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program to ``sock``, then drop what reached the socket before it, so
    that everything read afterwards passed the filter.  OSError if the kernel refuses."""
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buffer))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program
    blocking = sock.getblocking()
    sock.setblocking(False)
    try:
        while True:
            sock.recv(1)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(blocking)


def attach_udp_ports(sock: socket.socket, ports: list[int]) -> None:
    """Let only UDP datagrams (IPv4 or IPv6) from or to ``ports``, and no outgoing copies, reach
    ``sock``, a packet socket on an interface with Ethernet framing.  OSError if the kernel refuses."""
    attach(sock, udp_ports_program(ports))


class FilterError(ValueError):
    """A capture filter libpcap cannot compile (the message says why), or no libpcap."""


class Expression:
    """A capture filter (``host 127.0.0.1 and udp port 6666``: tcpdump's and tshark's ``-f``
    syntax, pcap-filter(7)) compiled by libpcap for one link type."""

    def __init__(self, text: str, linktype: int = DLT_EN10MB):
        # The link type (a frame's framing) decides the offsets the program reads.
        from scapy.arch.common import compile_filter
        from scapy.error import Scapy_Exception

        self.text = text
        try:
            self._bpf = compile_filter(text, linktype=linktype)
        except ImportError:
            raise FilterError("a capture filter needs libpcap (Debian: apt-get install libpcap0.8)") from None
        except Scapy_Exception as exc:
            # Scapy's message: "Failed to compile filter expression '...' (libpcap's reason)"
            reason = str(exc).rpartition(" (")[2].rstrip(")") or str(exc)
            raise FilterError(f"bad capture filter {text!r}: {reason}") from None

    def program(self) -> list[tuple[int, int, int, int]]:
        insns = self._bpf.bf_insns
        return [(insns[i].code, insns[i].jt, insns[i].jf, insns[i].k) for i in range(self._bpf.bf_len)]

    def matches(self, frame: bytes) -> bool:
        """Whether a whole frame of this link type passes the filter (libpcap runs the program)."""
        from scapy.libs.winpcapy import pcap_pkthdr

        header = pcap_pkthdr(caplen=len(frame), len=len(frame))
        return bool(_offline_filter()(ctypes.byref(self._bpf), ctypes.byref(header), frame))

    def __del__(self):
        from scapy.arch.common import free_filter

        if getattr(self, "_bpf", None) is not None:
            free_filter(self._bpf)


def _offline_filter():
    """libpcap's ``pcap_offline_filter`` (Scapy declares it only on Windows)."""
    global _OFFLINE_FILTER
    if _OFFLINE_FILTER is None:
        from scapy.libs.winpcapy import _lib, bpf_program, pcap_pkthdr

        function = _lib.pcap_offline_filter
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.POINTER(bpf_program), ctypes.POINTER(pcap_pkthdr), ctypes.c_char_p]
        _OFFLINE_FILTER = function
    return _OFFLINE_FILTER


_OFFLINE_FILTER = None
