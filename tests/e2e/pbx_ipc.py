"""The Pillarbox IPC frame format (common/ipc/frame.hpp) in Python, for tests.

Standard library only. The message tables are read from the C++ headers
(common/ipc/<name>_msgs.hpp), so a test speaks exactly what the programs
speak. Typical use::

    import pbx_ipc

    auth = pbx_ipc.load_protocol("auth")
    with pbx_ipc.Client(inst.runtime_dir + "/auth/auth.sock", auth) as c:
        name, fields = c.request("rcpt", id=1, address="alice@example.test")
        assert name == "rcpt_result" and fields["status"] == "found"

Values: U64 fields are ints, Str fields str (UTF-8), Bytes fields bytes, Fd
fields file descriptor numbers (sent with SCM_RIGHTS; received ones belong to
the caller). A repeated field is a list. Decoding is as strict as the C++
decoder: unknown type or field, missing required field, duplicate field,
wrong value length, NUL in a Str, wrong fd count and trailing bytes raise
DecodeError.

Module functions
    load_protocol(name, source_dir=None)  Protocol from common/ipc/NAME_msgs.hpp
    HELLO                                  the built-in hello protocol
    encode(protocol, name, fields)         -> (frame bytes, [fds])
    decode(protocol, frame, fds=())        -> (name, fields); frame is one
                                              whole frame, length prefix included
    frame_length(prefix4)                  total length announced by a prefix
    to_text(protocol, name, fields)        one printable line (like ipc::to_text)

class Client(path, protocol, timeout=10)
    Connects to a Unix socket and exchanges hellos. Methods: send(name,
    **fields), send_raw(bytes, fds=()), recv(timeout=None) -> (name, fields),
    request(name, **fields) -> (name, fields), close(); a context manager.
    Attributes: sock.
"""

import os
import re
import socket
import struct
import time

__all__ = ["Protocol", "DecodeError", "load_protocol", "HELLO", "encode", "decode",
           "frame_length", "to_text", "Client", "MAGIC", "WIRE_VERSION", "MAX_FDS"]

MAGIC = 0x5042
WIRE_VERSION = 1
HEADER = struct.Struct(">IHBBHH")  # length, magic, wire version, fd count, type, field count
FIELD = struct.Struct(">HI")       # field index, value length
MAX_FDS = 16
KINDS = ("U64", "Str", "Bytes", "Fd")


class DecodeError(ValueError):
    """A frame the C++ decoder would refuse; .code names the DecodeErrc."""

    def __init__(self, code, text):
        super().__init__("%s: %s" % (code, text))
        self.code = code


class Protocol:
    """name, version, max_frame, messages: {name: (type, [(field, kind, required, repeated)])}."""

    def __init__(self, name, version, messages, max_frame):
        self.name = name
        self.version = version
        self.max_frame = max_frame
        self.messages = messages
        self.by_type = {t: (n, f) for n, (t, f) in messages.items()}

    def __repr__(self):
        return "Protocol(%s v%d, %d messages)" % (self.name, self.version, len(self.messages))


HELLO = Protocol("hello", 1, {"hello": (0, [("protocol", "Str", True, False),
                                            ("version", "U64", True, False)])}, 512)


def _source_dir():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _int_expr(text):
    """Evaluates the size expressions the headers use: 64 * 1024, 1 << 20, 1u << 30."""
    text = re.sub(r"(\d+)[uU]?[lL]*", r"\1", text.strip())
    if not re.fullmatch(r"[\d\s*<()+]+", text):
        raise ValueError("cannot evaluate %r" % text)
    return int(eval(text, {"__builtins__": {}}))  # digits and operators only


def load_protocol(name, source_dir=None):
    """Reads the tables of common/ipc/NAME_msgs.hpp."""
    path = os.path.join(source_dir or _source_dir(), "common", "ipc", "%s_msgs.hpp" % name)
    with open(path) as f:
        text = re.sub(r"//[^\n]*", "", f.read())
    arrays = {}
    for m in re.finditer(r"FieldSpec\s+(\w+)\[\]\s*=\s*\{(.*?)\};", text, re.S):
        fields = []
        for fm in re.finditer(r'\{\s*"(\w+)"\s*,\s*Kind::(\w+)\s*,\s*(\w+)\s*(?:,\s*(\w+)\s*)?\}',
                              m.group(2)):
            required = fm.group(3) in ("kRequired", "true")
            repeated = fm.group(4) in ("kRepeated", "true")
            fields.append((fm.group(1), fm.group(2), required, repeated))
        arrays[m.group(1)] = fields
    pm = re.search(r'Protocol\s+kProtocol\s*\{\s*"(\w+)"\s*,\s*(\d+)\s*,\s*(\w+)\s*,([^}]*)\}',
                   text)
    if not pm:
        raise ValueError("%s: no kProtocol" % path)
    mm = re.search(r"MessageSpec\s+%s\[\]\s*=\s*\{(.*?)\};" % pm.group(3), text, re.S)
    messages = {}
    for em in re.finditer(r'\{\s*(\d+)\s*,\s*"(\w+)"\s*,\s*(\w+)\s*\}', mm.group(1)):
        messages[em.group(2)] = (int(em.group(1)), arrays[em.group(3)])
    return Protocol(pm.group(1), int(pm.group(2)), messages, _int_expr(pm.group(4)))


def _items(fields):
    """(name, value) pairs in order; a list value is a repeated field."""
    pairs = fields.items() if isinstance(fields, dict) else fields
    for name, value in pairs:
        if isinstance(value, (list, tuple)):
            for v in value:
                yield name, v
        else:
            yield name, value


def encode(protocol, name, fields):
    """One frame: (bytes, fds). Fields: dict or list of (name, value)."""
    if name not in protocol.messages:
        raise KeyError("%s has no message %r" % (protocol.name, name))
    type_id, specs = protocol.messages[name]
    index = {f[0]: (i, f) for i, f in enumerate(specs)}
    body = bytearray()
    fds = []
    count = 0
    seen = set()
    for fname, value in _items(fields):
        i, (_, kind, _, repeated) = index[fname]
        if fname in seen and not repeated:
            raise ValueError("field %r given twice" % fname)
        seen.add(fname)
        if kind == "U64":
            data = struct.pack(">Q", value)
        elif kind == "Str":
            data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            if b"\0" in data:
                raise ValueError("NUL in Str field %r" % fname)
        elif kind == "Bytes":
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        else:
            data = bytes([len(fds)])
            fds.append(value)
        body += FIELD.pack(i, len(data)) + data
        count += 1
    for fname, _, required, _ in specs:
        if required and fname not in seen:
            raise ValueError("required field %r missing" % fname)
    total = HEADER.size + len(body)
    if total > protocol.max_frame:
        raise ValueError("frame of %d bytes over the limit %d" % (total, protocol.max_frame))
    header = HEADER.pack(total - 4, MAGIC, WIRE_VERSION, len(fds), type_id, count)
    return bytes(header) + bytes(body), fds


def frame_length(prefix):
    return 4 + struct.unpack(">I", prefix[:4])[0]


def decode(protocol, frame, fds=()):
    """(name, fields) of one whole frame; strict like ipc::decode_frame."""
    if len(frame) < 4:
        raise DecodeError("truncated", "no length prefix")
    total = frame_length(frame)
    if total > protocol.max_frame:
        raise DecodeError("frame-too-large", "%d bytes" % total)
    if len(frame) < total or total < HEADER.size:
        raise DecodeError("truncated", "frame shorter than announced")
    if len(frame) > total:
        raise DecodeError("trailing-bytes", "after the frame")
    _, magic, version, nfds, type_id, count = HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise DecodeError("bad-magic", hex(magic))
    if version != WIRE_VERSION:
        raise DecodeError("bad-version", str(version))
    if type_id not in protocol.by_type:
        raise DecodeError("unknown-type", str(type_id))
    name, specs = protocol.by_type[type_id]
    fields = {}
    pos = HEADER.size
    fd_fields = 0
    for _ in range(count):
        if pos + FIELD.size > total:
            raise DecodeError("truncated", "field header")
        i, length = FIELD.unpack_from(frame, pos)
        pos += FIELD.size
        if i >= len(specs):
            raise DecodeError("unknown-field", str(i))
        if pos + length > total:
            raise DecodeError("truncated", "field value")
        data = bytes(frame[pos:pos + length])
        pos += length
        fname, kind, _, repeated = specs[i]
        if kind == "U64":
            if length != 8:
                raise DecodeError("bad-value", "%s: U64 of %d bytes" % (fname, length))
            value = struct.unpack(">Q", data)[0]
        elif kind == "Str":
            if b"\0" in data:
                raise DecodeError("bad-value", "%s: NUL in Str" % fname)
            value = data.decode("utf-8", "surrogateescape")
        elif kind == "Bytes":
            value = data
        else:
            if length != 1 or data[0] != fd_fields or fd_fields >= len(fds):
                raise DecodeError("fd-mismatch", fname)
            value = fds[fd_fields]
            fd_fields += 1
        if fname in fields:
            if not repeated:
                raise DecodeError("duplicate-field", fname)
            fields[fname].append(value)
        else:
            fields[fname] = [value] if repeated else value
    if pos != total:
        raise DecodeError("trailing-bytes", "after the last field")
    if nfds != fd_fields or len(fds) != fd_fields:
        raise DecodeError("fd-mismatch", "header %d, fields %d, received %d"
                          % (nfds, fd_fields, len(fds)))
    for fname, _, required, _ in specs:
        if required and fname not in fields:
            raise DecodeError("missing-field", fname)
    return name, fields


def _escape(value, max_value=256):
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
    out = "".join(chr(b) if 0x21 <= b <= 0x7e and b != 0x5c else "\\x%02x" % b
                  for b in data[:max_value])
    if len(data) > max_value:
        out += "...(+%d)" % (len(data) - max_value)
    return out


def to_text(protocol, name, fields):
    """type=NAME field=value ... (values escaped like ipc::escape_value)."""
    parts = ["type=" + name]
    for fname, value in _items(fields):
        parts.append("%s=%s" % (fname, _escape(value)))
    return " ".join(parts)


class Client:
    """A blocking client of one channel: connect, hello both ways, then frames."""

    def __init__(self, path, protocol, timeout=10):
        self.protocol = protocol
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._buf = b""
        self._fds = []
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
            self.send_raw(encode(HELLO, "hello", {"protocol": protocol.name,
                                                   "version": protocol.version})[0])
            name, fields = self._recv_frame(HELLO, timeout)
            if fields["protocol"] != protocol.name or fields["version"] != protocol.version:
                raise DecodeError("protocol-mismatch", "peer speaks %s version %d"
                                  % (fields["protocol"], fields["version"]))
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def send_raw(self, data, fds=()):
        if fds:
            socket.send_fds(self.sock, [data[:1]], list(fds))
            data = data[1:]
        self.sock.sendall(data)

    def send(self, name, **fields):
        data, fds = encode(self.protocol, name, fields)
        self.send_raw(data, fds)

    def _fill(self, deadline):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise socket.timeout("timed out waiting for a frame")
        self.sock.settimeout(remaining)
        data, fds, _, _ = socket.recv_fds(self.sock, 65536, MAX_FDS)
        if not data:
            raise EOFError("the peer closed the connection")
        self._buf += data
        self._fds += fds

    def _recv_frame(self, protocol, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._buf) < 4:
            self._fill(deadline)
        total = frame_length(self._buf)
        if total > protocol.max_frame:
            raise DecodeError("frame-too-large", "%d bytes" % total)
        while len(self._buf) < total:
            self._fill(deadline)
        frame, self._buf = self._buf[:total], self._buf[total:]
        nfds = HEADER.unpack_from(frame)[3]
        fds, self._fds = self._fds[:nfds], self._fds[nfds:]
        return decode(protocol, frame, fds)

    def recv(self, timeout=None):
        """The next frame as (name, fields); timeout defaults to the client's."""
        return self._recv_frame(self.protocol, self.timeout if timeout is None else timeout)

    def request(self, name, **fields):
        """Sends one message and returns the next frame received."""
        self.send(name, **fields)
        return self.recv()
