"""A Lua dissector for Wireshark and tshark, generated from the chat layer's field model
(proto.fields) and its bindings: ``tools/sniff.py --wireshark-dissector`` prints it."""

from __future__ import annotations

import json
import re
import string

from proto import HEADER_MIN, MAGIC, PAYLOADS, VERSION, ChatHeader, messages
from proto.fields import Kind, LayerSpec, layer_spec

# Where an answer names the requests it answers (the sniffer's tools/traffic.py reads the same):
# its ANSWER_ID, and the MORE_ID of each item of its MORE list, if it has one.
ANSWER_ID, MORE, MORE_ID = "ack_id", "also", "id"

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

# Requests matched to their answers, as tshark does for DNS ("Response in", "Request in", the
# response time), retransmissions and duplicate acks as expert info, and conversation statistics
# (tshark -z chat,conv; Statistics > ChatApp conversations in Wireshark).  Lua, with $names filled
# in from proto.messages and the answer layers.
_LUA_EXCHANGES = string.Template(r"""
-- Requests and answers, matched as the nodes do: an answer from B to A answers the request A sent
-- to B with that message id (its $answer_id, and each of its $more).  A request sent again with the
-- same id on the same path is a retransmission; a second answer to one request is a duplicate ack.
-- Worked out on the first pass over the capture and kept per frame: tshark shows "Response in" on a
-- request only with two passes (-2), since on one pass the answer has not been read yet.
local is_request = { $requests }
local is_answer = { $answers }
local f_response_in = ProtoField.framenum("chat.response_in", "Response in", base.NONE, frametype.RESPONSE)
local f_response_to = ProtoField.framenum("chat.response_to", "Request in", base.NONE, frametype.REQUEST)
local f_also_response_to = ProtoField.framenum("chat.also_response_to", "Also answers the request in", base.NONE, frametype.REQUEST)
local f_time = ProtoField.relative_time("chat.time", "Response time")
local f_retry = ProtoField.uint32("chat.retry", "Retry", base.DEC)
local f_retransmission_of = ProtoField.framenum("chat.retransmission_of", "Retransmission of", base.NONE,
                                                frametype.RETRANS_PREV or frametype.NONE)
local f_duplicate_of = ProtoField.framenum("chat.duplicate_of", "Duplicate of the answer in", base.NONE, frametype.DUP_ACK)
for _, f in ipairs({ f_response_in, f_response_to, f_also_response_to, f_time, f_retry, f_retransmission_of, f_duplicate_of }) do
    fields[#fields + 1] = f
end
local e_retransmission = ProtoExpert.new("chat.retransmission", "Retransmission", expert.group.SEQUENCE, expert.severity.NOTE)
local e_duplicate_ack = ProtoExpert.new("chat.duplicate_ack", "Duplicate ack", expert.group.SEQUENCE, expert.severity.NOTE)
local e_unmatched = ProtoExpert.new("chat.request_not_seen", "Answer to a request not in the capture",
                                    expert.group.SEQUENCE, expert.severity.NOTE)
chat.experts = { e_retransmission, e_duplicate_ack, e_unmatched }

local exchanges = {}  -- "source destination msg_id" -> { kind, conversation, tries, times, answers }
local seen = {}  -- frame number -> what the first pass found about it
function chat.init()  -- a new capture, or the same one dissected again from the start
    exchanges, seen = {}, {}
end

local function endpoint(address, port)
    local text = tostring(address)
    if text:find(":", 1, true) then text = "[" .. text .. "]" end  -- IPv6
    return text .. ":" .. port
end

local function conversation(a, b)
    if a > b then a, b = b, a end
    return a .. " <-> " .. b
end

local function track(pinfo, kind, msg_id, body)
    local t = seen[pinfo.number]
    if t then return t end
    local src, dst = endpoint(pinfo.src, pinfo.src_port), endpoint(pinfo.dst, pinfo.dst_port)
    t = { conversation = conversation(src, dst), bytes = pinfo.len }
    seen[pinfo.number] = t
    if is_answer[kind] then
        t.answer = true
        local ids = { body.$answer_id }
        for _, more in ipairs(body.$more or {}) do ids[#ids + 1] = more.$more_id end
        for n, id in ipairs(ids) do
            local ex = exchanges[dst .. " " .. src .. " " .. tostring(id)]
            if ex then
                if n == 1 then
                    t.request_in = ex.tries[#ex.tries]
                    t.time = pinfo.abs_ts - ex.times[#ex.times]
                    t.duplicate_of = ex.answers[1]
                else
                    t.also = t.also or {}
                    t.also[#t.also + 1] = ex.tries[#ex.tries]
                end
                if #ex.answers == 0 then
                    for _, try in ipairs(ex.tries) do seen[try].response_in = pinfo.number end
                end
                ex.answers[#ex.answers + 1] = pinfo.number
            end
        end
    elseif is_request[kind] then
        t.request = true
        local key = src .. " " .. dst .. " " .. tostring(msg_id)
        local ex = exchanges[key]
        if ex == nil or ex.kind ~= kind then
            ex = { kind = kind, conversation = t.conversation, tries = {}, times = {}, answers = {} }
            exchanges[key] = ex
        end
        if #ex.tries > 0 then
            t.retransmission_of, t.retry = ex.tries[1], #ex.tries
        end
        ex.tries[#ex.tries + 1] = pinfo.number
        ex.times[#ex.times + 1] = pinfo.abs_ts
    end
    return t
end

local function show_exchange(pinfo, top, t)
    local function generated(field, value) top:add(field, value):set_generated() end
    if t.response_in then generated(f_response_in, t.response_in) end
    if t.request_in then
        generated(f_response_to, t.request_in)
        local seconds = math.floor(t.time)
        generated(f_time, NSTime.new(seconds, math.floor((t.time - seconds) * 1e9 + 0.5)))
    elseif t.answer then
        top:add_proto_expert_info(e_unmatched)
    end
    for _, frame in ipairs(t.also or {}) do generated(f_also_response_to, frame) end
    if t.retransmission_of then
        generated(f_retry, t.retry)
        generated(f_retransmission_of, t.retransmission_of)
        top:add_proto_expert_info(e_retransmission, "Retransmission " .. t.retry .. " of the request in frame " .. t.retransmission_of)
        pinfo.cols.info:append(" [retransmission]")
    end
    if t.duplicate_of then
        generated(f_duplicate_of, t.duplicate_of)
        top:add_proto_expert_info(e_duplicate_ack, "Duplicate ack: the request in frame " .. t.request_in ..
                                  " was answered already in frame " .. t.duplicate_of)
        pinfo.cols.info:append(" [duplicate ack]")
    end
end

-- Conversation statistics: per pair of endpoints, datagrams, bytes, requests, answers, retransmissions,
-- duplicate acks, requests never answered and the mean response time.
local COLUMNS = { "Conversation", "Frames", "Bytes", "Requests", "Answers", "Retransmissions", "Duplicate acks",
                  "Unanswered", "Mean RTT (ms)" }

local function conversation_tap(show)
    local rows, order = {}, {}
    local tap = Listener.new("frame", "chat")
    function tap.reset() rows, order = {}, {} end
    function tap.packet(pinfo)
        local t = seen[pinfo.number]
        if not t then return end
        local row = rows[t.conversation]
        if not row then
            row = { t.conversation, 0, 0, 0, 0, 0, 0, 0, 0, rtt = 0 }
            rows[t.conversation] = row
            order[#order + 1] = t.conversation
        end
        row[2], row[3] = row[2] + 1, row[3] + t.bytes
        if t.request then row[4] = row[4] + 1 end
        if t.answer then row[5] = row[5] + 1 end
        if t.retransmission_of then row[6] = row[6] + 1 end
        if t.duplicate_of then row[7] = row[7] + 1 end
        if t.time and not t.duplicate_of then row.rtt, row[9] = row.rtt + t.time, row[9] + 1 end
    end
    function tap.draw()
        for _, ex in pairs(exchanges) do
            local row = rows[ex.conversation]
            if row and #ex.answers == 0 then row[8] = row[8] + 1 end
        end
        local lines = { "ChatApp conversations", table.concat(COLUMNS, "\t") }
        for _, key in ipairs(order) do
            local row = rows[key]
            local cells = { table.unpack(row, 1, 8) }
            cells[9] = row[9] > 0 and string.format("%.3f", row.rtt / row[9] * 1000) or "-"
            lines[#lines + 1] = table.concat(cells, "\t")
        end
        show(table.concat(lines, "\n"))
    end
    return tap
end

register_stat_cmd_arg("chat,conv", function() conversation_tap(print) end)
if gui_enabled() then
    register_menu("ChatApp conversations", function()
        local window = TextWindow.new("ChatApp conversations")
        local tap = conversation_tap(function(text) window:set(text) end)
        window:set_atclose(function() tap:remove() end)
        retap_packets()
    end, MENU_STAT_CONVERSATION_LIST or MENU_STAT_GENERIC)
end
""")

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
    local payload, body = payload_by_{key}[h.{key}], {{}}
    if payload then off, body = payload(buf, off, top) end
    if off < buf:len() then
        top:add_expert_info(PI_MALFORMED, PI_WARN, (buf:len() - off) .. " bytes after the chat packet")
    end
    show_exchange(pinfo, top, track(pinfo, h.{key}, h.msg_id, body))
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
                out += [f"    v.{fld.name} = {{}}",
                        f"    for n = 1, v.{fld.measured_by} do off, v.{fld.name}[n] = dissect.{self.lname(fld.item)}(buf, off, item) end"]
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


def _exchanges() -> str:
    """The Lua that matches requests and answers, with the types from proto.messages."""
    for kind in messages.ANSWERS:
        layer = layer_spec(PAYLOADS[kind])
        more = [f for f in layer.fields if f.name == MORE]
        if ANSWER_ID not in {f.name for f in layer.fields} or more and MORE_ID not in {f.name for f in more[0].item.fields}:
            raise NotImplementedError(f"{kind} does not name the request it answers by {ANSWER_ID} (and {MORE}.{MORE_ID})")
    requests = ", ".join(f"[{m.code}] = true" for m in messages.MESSAGES if m.answer is not None)
    answers = ", ".join(f"[{m.code}] = true" for m in messages.MESSAGES if m.answer is None)
    return _LUA_EXCHANGES.substitute(requests=requests, answers=answers, answer_id=ANSWER_ID, more=MORE, more_id=MORE_ID)


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
    lua.lines.append(_exchanges())
    lua.lines += ["chat.fields = fields", "", "local dissect = {}"]
    for layer in layers:
        lua.dissect(layer)
    payloads = ", ".join(f"[{value}] = dissect.{lua.lname(layer)}" for value, layer in sorted(dispatch.items()))
    types = lua.enums[tuple(sorted(header.field(key).enum.items()))]
    lua.lines.append(_LUA_MAIN.format(key=key, payloads=payloads, types=types, minimum=HEADER_MIN, magic=MAGIC,
                                      version=VERSION))
    return "\n".join(lua.lines)
