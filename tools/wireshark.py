"""A Lua dissector for Wireshark and tshark, generated from the chat layer's field model
(proto.fields) and its bindings: ``tools/sniff.py --wireshark-dissector`` prints it."""

from __future__ import annotations

import json
import re

from proto import HEADER_MIN, MAGIC, VERSION, ChatHeader
from proto.fields import Kind, LayerSpec, layer_spec

# The layers' and fields' names said in words, for the labels of the protocol tree
# (PriMsg.text: "Private message text"); the filter names stay the layer's own (chat.primsg.text).
_WORDS = {"pri": "private", "msg": "message", "grp": "group", "reg": "registration", "id": "ID", "len": "length", "ip": "IP"}

_INTEGERS = {"B": "uint8", "H": "uint16", "I": "uint32", "Q": "uint64", "b": "int8", "h": "int16", "i": "int32", "q": "int64"}

_LUA_HEAD = """\
-- ChatApp dissector for Wireshark and tshark.
-- Generated from the Scapy layer (proto/chat.py) by `tools/sniff.py --wireshark-dissector`: do not edit,
-- generate it again when the layer changes.
--   tshark -X lua_script:chat.lua -r capture.pcap -V
--   wireshark -X lua_script:chat.lua capture.pcap   (or copy it to ~/.local/lib/wireshark/plugins/)
-- Chat datagrams are recognised on any UDP port by magic and version (a heuristic dissector);
-- if another dissector claims a port first, enable 'Try heuristic sub-dissectors first' for UDP.

local chat = Proto("chat", "ChatApp")
local fields = {}"""

_LUA_MAIN = """
local payload_by_{key} = {{ {payloads} }}

local function dissect_chat(buf, pinfo, tree)
    pinfo.cols.protocol = "CHAT"
    local top = tree:add(chat, buf())
    local off, h = dissect.chat(buf, 0, top)
    local name = {types}[h.{key}] or tostring(h.{key})
    local info = name .. " #" .. tostring(h.msg_id) .. " from " .. h.sender
    pinfo.cols.info = info
    top:append_text(", " .. info)
    local payload = payload_by_{key}[h.{key}]
    if payload then off = payload(buf, off, top) end
    if off < buf:len() then
        top:add_expert_info(PI_MALFORMED, PI_WARN, (buf:len() - off) .. " bytes after the chat packet")
    end
    return off
end
chat.dissector = dissect_chat

local function heuristic(buf, pinfo, tree)
    if buf:len() < {minimum} then return false end
    if buf(0, 2):uint() ~= 0x{magic:04X} or buf(2, 1):uint() ~= {version} then return false end
    -- The function itself: chat.dissector is its handle, whose call would add "chat" to the frame's
    -- protocols a second time (the heuristic added it once).
    dissect_chat(buf, pinfo, tree)
    return true
end

chat:register_heuristic("udp", heuristic)
DissectorTable.get("udp.port"):add_for_decode_as(chat)
"""


class _Lua:
    """Lua source for one dissector, written from layer models."""

    def __init__(self, header: LayerSpec):
        self.header = header
        self.lines: list[str] = []
        self.enums: dict[tuple, str] = {}  # value strings by content: Ack and RegAck share the status names

    def lname(self, layer: LayerSpec) -> str:
        return "chat" if layer is self.header else layer.title.lower()

    def abbrev(self, layer: LayerSpec, fld) -> str:
        return f"chat.{fld.name}" if layer is self.header else f"chat.{self.lname(layer)}.{fld.name}"

    def title(self, layer: LayerSpec) -> str:
        """The label of a layer's subtree: "Header", "Private message"."""
        return "Header" if layer is self.header else _said(layer.title)

    def label(self, layer: LayerSpec, fld) -> str:
        """A field's label: "Message ID" in the header, "Private message text" in a payload."""
        return _said(fld.name if layer is self.header else f"{layer.title} {fld.name}")

    def var(self, layer: LayerSpec, fld) -> str:
        return f"f_{self.lname(layer)}_{fld.name}"

    def enum(self, fld) -> str:
        values = tuple(sorted(fld.enum.items()))
        if values not in self.enums:
            self.enums[values] = f"vs_{len(self.enums)}"
            entries = ", ".join(f"[{k}] = {json.dumps(v)}" for k, v in values)
            self.lines.append(f"local {self.enums[values]} = {{ {entries} }}")
        return self.enums[values]

    def declare(self, layer: LayerSpec) -> None:
        """A ProtoField per field of ``layer`` (list fields are their items' fields)."""
        for fld in layer.fields:
            head = f'"{self.abbrev(layer, fld)}", "{self.label(layer, fld)}"'
            if fld.kind is Kind.LIST:
                continue
            if fld.kind in (Kind.TEXT, Kind.BYTES):
                ctor = f"ProtoField.string({head}, base.UNICODE)"
            elif fld.kind is Kind.IP:
                ctor = f"ProtoField.ipv4({head})"
            else:
                strings = self.enum(fld) if fld.kind is Kind.ENUM else "nil"
                ctor = f"ProtoField.{_INTEGERS[fld.code]}({head}, {'base.HEX' if fld.hex else 'base.DEC'}, {strings})"
            self.lines += [f"local {self.var(layer, fld)} = {ctor}", f"fields[#fields + 1] = {self.var(layer, fld)}"]

    def dissect(self, layer: LayerSpec) -> None:
        """``dissect.NAME(buf, off, tree)``: adds the fields of ``layer`` at ``off``; returns the new offset and the values."""
        out = self.lines
        out += ["", f"-- {layer.cls.__name__}", f"dissect.{self.lname(layer)} = function(buf, off, tree)", "    local v = {}",
                # A text item, not the protocol again: one "chat" in the frame's protocols.
                f'    local item = tree:add(buf(off), "{self.title(layer)}")', "    local start = off"]
        for fld in layer.fields:
            var = self.var(layer, fld)
            if fld.kind is Kind.LIST:
                out.append(f"    for _ = 1, v.{fld.measured_by} do off = dissect.{self.lname(fld.item)}(buf, off, item) end")
            elif fld.kind in (Kind.TEXT, Kind.BYTES):
                size = f"v.{fld.measured_by}"
                out += [f"    v.{fld.name} = buf(off, {size}):string(ENC_UTF_8)",
                        f"    item:add_packet_field({var}, buf(off, {size}), ENC_UTF_8)", f"    off = off + {size}"]
            elif fld.kind is Kind.IP:
                out += [f"    item:add({var}, buf(off, {fld.size}))", f"    off = off + {fld.size}"]
            else:
                reader = ("int" if fld.signed else "uint") + ("64" if fld.size == 8 else "")
                out += [f"    v.{fld.name} = buf(off, {fld.size}):{reader}()", f"    item:add({var}, buf(off, {fld.size}))",
                        f"    off = off + {fld.size}"]
        out += ["    item:set_len(off - start)", "    return off, v", "end"]


def _said(name: str) -> str:
    """A layer's or field's name in words, capitalised: "PriMsg text" -> "Private message text",
    "msg_id" -> "Message ID", "MsgId id" -> "Message ID" (a word said twice in a row, once)."""
    words: list[str] = []
    for part in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name):
        word = _WORDS.get(part.lower(), part.lower())
        if not words or words[-1].lower() != word.lower():
            words.append(word)
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def lua_dissector() -> str:
    """A Lua dissector for Wireshark and tshark, generated from the layer's field model and bindings."""
    header = layer_spec(ChatHeader)
    if header.span("magic") != (0, 2) or header.span("version") != (2, 3):
        raise NotImplementedError("the heuristic expects magic and version in the first three bytes")
    layers, dispatch, key = [header], {}, None
    for fields, cls in ChatHeader.payload_guess:
        if len(fields) != 1:
            raise NotImplementedError(f"{cls.__name__} is bound by more than one field")
        (key, value), = fields.items()
        dispatch[value] = layer_spec(cls)
        layers.append(layer_spec(cls))
    for layer in layers:  # grows as it goes: the items of lists
        layers += [item for item in layer.sub_layers() if item not in layers]
    lua = _Lua(header)
    lua.lines.append(_LUA_HEAD)
    for layer in layers:
        lua.declare(layer)
    lua.lines += ["chat.fields = fields", "", "local dissect = {}"]
    for layer in layers:
        lua.dissect(layer)
    payloads = ", ".join(f"[{value}] = dissect.{lua.lname(layer)}" for value, layer in sorted(dispatch.items()))
    types = lua.enums[tuple(sorted(header.field(key).enum.items()))]
    lua.lines.append(_LUA_MAIN.format(key=key, payloads=payloads, types=types, minimum=HEADER_MIN, magic=MAGIC,
                                      version=VERSION))
    return "\n".join(lua.lines)
