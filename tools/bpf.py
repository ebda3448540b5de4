"""A classic BPF program that keeps, in the kernel, only the IPv4 UDP datagrams to or from some
ports, and none of the outgoing copies a packet socket on ``lo`` sees: attached to the
sniffer's packet socket, other traffic on the interface (a load test, another test suite) never
fills its buffer or costs it Python time.

Classic BPF (``SO_ATTACH_FILTER``, the instruction set of ``tcpdump -d``) because it needs
neither libpcap nor tcpdump to compile.  The program, for Ethernet framing (``lo`` and Ethernet
interfaces), ports P1..Pn:

    ld  pkttype          ; drop the outgoing copy (the kernel's, not ours to compare bytes)
    jeq #OUTGOING  drop
    ldh [12]             ; EtherType
    jne #IPv4      drop
    ldb [23]             ; IP protocol
    jne #UDP       drop
    ldh [20]             ; a fragment after the first has no UDP header
    jset #0x1fff   drop
    ldxb 4*([14]&0xf)    ; X = IP header length
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

# opcodes (linux/filter.h)
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS, _LD_H_IND, _LDX_B_MSH = 0x20, 0x28, 0x30, 0x48, 0xB1
_JEQ, _JSET, _RET = 0x15, 0x45, 0x06


def udp_ports_program(ports: list[int]) -> list[tuple[int, int, int, int]]:
    """The instructions (code, jt, jf, k) of the program above for ``ports`` (1 to 100 of them)."""
    if not 1 <= len(ports) <= 100:  # jump offsets are 8 bits
        raise ValueError("between 1 and 100 ports")
    n = len(ports)
    head = [
        (_LD_W_ABS, 0, 0, SKF_AD_PKTTYPE & 0xFFFFFFFF),
        (_JEQ, None, 0, PACKET_OUTGOING),
        (_LD_H_ABS, 0, 0, 12),
        (_JEQ, 0, None, 0x0800),
        (_LD_B_ABS, 0, 0, 23),
        (_JEQ, 0, None, socket.IPPROTO_UDP),
        (_LD_H_ABS, 0, 0, 20),
        (_JSET, None, 0, 0x1FFF),
        (_LDX_B_MSH, 0, 0, 14),
    ]
    body = []
    for offset in (14, 16):  # source port, then destination port
        body.append((_LD_H_IND, 0, 0, offset))
        body.extend((_JEQ, "keep", 0, port) for port in ports)
    program = head + body + [(_RET, 0, 0, 0), (_RET, 0, 0, SNAPLEN)]
    drop, keep = len(program) - 2, len(program) - 1
    out = []
    for at, (code, jt, jf, k) in enumerate(program):
        # None jumps to drop, "keep" to keep; offsets count from the next instruction
        jt = drop - at - 1 if jt is None else keep - at - 1 if jt == "keep" else jt
        jf = drop - at - 1 if jf is None else jf
        out.append((code, jt, jf, k))
    assert len(out) == 9 + 2 * (n + 1) + 2
    return out


def attach_udp_ports(sock: socket.socket, ports: list[int]) -> None:
    """Let only IPv4 UDP datagrams from or to ``ports`` (and no outgoing copies) reach ``sock``,
    a packet socket on an interface with Ethernet framing.  OSError if the kernel refuses."""
    code = b"".join(struct.pack("HBBI", *insn) for insn in udp_ports_program(ports))
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buffer))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program
