#include "common/ipc/frame.hpp"

#include <cstdlib>
#include <utility>

#include "common/log.hpp"

namespace pbx::ipc {
namespace {

constexpr FieldSpec kHelloFields[] = {
    {"protocol", Kind::Str, kRequired},
    {"version", Kind::U64, kRequired},
};
constexpr MessageSpec kHelloMessages[] = {{kHelloType, "hello", kHelloFields}};
// A hello is tiny; a peer announcing a bigger first frame is not one of ours.
constexpr uint32_t kMaxHelloFrame = 512;

[[noreturn]] void bug(std::string_view what) {
    log::error("ipc: programming error: ", what);
    std::abort();
}

std::string_view kind_name(Kind k) {
    switch (k) {
        case Kind::U64:
            return "u64";
        case Kind::Str:
            return "str";
        case Kind::Bytes:
            return "bytes";
        case Kind::Fd:
            return "fd";
    }
    return "?";
}

void put_u8(std::string& out, uint8_t v) {
    out.push_back(static_cast<char>(v));
}
void put_u16(std::string& out, uint16_t v) {
    put_u8(out, static_cast<uint8_t>(v >> 8));
    put_u8(out, static_cast<uint8_t>(v));
}
void put_u32(std::string& out, uint32_t v) {
    put_u16(out, static_cast<uint16_t>(v >> 16));
    put_u16(out, static_cast<uint16_t>(v));
}
void put_u64(std::string& out, uint64_t v) {
    put_u32(out, static_cast<uint32_t>(v >> 32));
    put_u32(out, static_cast<uint32_t>(v));
}

// Big-endian read of n bytes at `at`; the caller has checked the bounds.
uint64_t get_be(std::string_view s, size_t at, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
    return v;
}

const MessageSpec* find_type(const Protocol& p, uint16_t type) {
    for (const MessageSpec& m : p.messages)
        if (m.type == type) return &m;
    return nullptr;
}

Err<DecodeError> derr(DecodeErrc code, std::string text) {
    return Err<DecodeError>{DecodeError{code, std::move(text)}};
}

}  // namespace

const Protocol kHelloProtocol{"hello", 1, kHelloMessages, kMaxHelloFrame};

std::string_view to_string(DecodeErrc code) {
    switch (code) {
        case DecodeErrc::Truncated:
            return "truncated";
        case DecodeErrc::FrameTooLarge:
            return "frame-too-large";
        case DecodeErrc::BadMagic:
            return "bad-magic";
        case DecodeErrc::BadVersion:
            return "bad-version";
        case DecodeErrc::UnknownType:
            return "unknown-type";
        case DecodeErrc::UnknownField:
            return "unknown-field";
        case DecodeErrc::MissingField:
            return "missing-field";
        case DecodeErrc::DuplicateField:
            return "duplicate-field";
        case DecodeErrc::BadValue:
            return "bad-value";
        case DecodeErrc::TrailingBytes:
            return "trailing-bytes";
        case DecodeErrc::FdMismatch:
            return "fd-mismatch";
        case DecodeErrc::NoHello:
            return "no-hello";
        case DecodeErrc::ProtocolMismatch:
            return "protocol-mismatch";
    }
    return "unknown";
}

// ---- Message ---------------------------------------------------------------

Message::Message(const Protocol& protocol, uint16_t type)
    : protocol_(&protocol), spec_(find_type(protocol, type)) {
    if (!spec_) bug(log::concat("protocol ", protocol.name, " has no message type ", type));
}

Message Message::named(const Protocol& protocol, std::string_view type_name) {
    for (const MessageSpec& m : protocol.messages)
        if (m.name == type_name) return Message(&protocol, &m);
    bug(log::concat("protocol ", protocol.name, " has no message '", type_name, "'"));
}

uint16_t Message::index_of(std::string_view field, Kind kind) const {
    for (size_t i = 0; i < spec_->fields.size(); ++i) {
        const FieldSpec& f = spec_->fields[i];
        if (f.name != field) continue;
        // Str and Bytes share storage; reading a Str as bytes is harmless.
        bool compatible = f.kind == kind || (f.kind == Kind::Str && kind == Kind::Bytes);
        if (!compatible)
            bug(log::concat(spec_->name, ".", field, " is ", kind_name(f.kind), ", used as ",
                            kind_name(kind)));
        return static_cast<uint16_t>(i);
    }
    bug(log::concat("message '", spec_->name, "' has no field '", field, "'"));
}

Message::Field& Message::slot(uint16_t index) {
    if (!spec_->fields[index].repeated) {
        for (Field& f : fields_)
            if (f.index == index) {
                f = Field{index};
                return f;
            }
    }
    fields_.push_back(Field{index});
    return fields_.back();
}

Message& Message::set_u64(std::string_view field, uint64_t value) {
    slot(index_of(field, Kind::U64)).u64 = value;
    return *this;
}

Message& Message::set_str(std::string_view field, std::string_view value) {
    if (value.find('\0') != std::string_view::npos)
        bug(log::concat(spec_->name, ".", field, ": NUL in a str value"));
    slot(index_of(field, Kind::Str)).data.assign(value);
    return *this;
}

Message& Message::set_bytes(std::string_view field, std::string_view value) {
    uint16_t i = index_of(field, Kind::Bytes);
    if (spec_->fields[i].kind != Kind::Bytes)
        bug(log::concat(spec_->name, ".", field, " is str, set as bytes"));
    slot(i).data.assign(value);
    return *this;
}

Message& Message::add_fd(std::string_view field, UniqueFd fd) {
    if (!fd.valid()) bug(log::concat(spec_->name, ".", field, ": invalid fd"));
    slot(index_of(field, Kind::Fd)).fd = std::move(fd);
    return *this;
}

bool Message::has(std::string_view field) const {
    for (size_t i = 0; i < spec_->fields.size(); ++i) {
        if (spec_->fields[i].name != field) continue;
        for (const Field& f : fields_)
            if (f.index == i) return true;
        return false;
    }
    bug(log::concat("message '", spec_->name, "' has no field '", field, "'"));
}

std::optional<uint64_t> Message::get_u64(std::string_view field) const {
    uint16_t i = index_of(field, Kind::U64);
    for (const Field& f : fields_)
        if (f.index == i) return f.u64;
    return std::nullopt;
}

std::optional<std::string_view> Message::get_str(std::string_view field) const {
    uint16_t i = index_of(field, Kind::Str);
    for (const Field& f : fields_)
        if (f.index == i) return std::string_view(f.data);
    return std::nullopt;
}

std::optional<std::string_view> Message::get_bytes(std::string_view field) const {
    uint16_t i = index_of(field, Kind::Bytes);
    for (const Field& f : fields_)
        if (f.index == i) return std::string_view(f.data);
    return std::nullopt;
}

std::vector<std::string_view> Message::get_all(std::string_view field) const {
    uint16_t i = index_of(field, Kind::Bytes);
    std::vector<std::string_view> out;
    for (const Field& f : fields_)
        if (f.index == i) out.emplace_back(f.data);
    return out;
}

std::vector<uint64_t> Message::get_all_u64(std::string_view field) const {
    uint16_t i = index_of(field, Kind::U64);
    std::vector<uint64_t> out;
    for (const Field& f : fields_)
        if (f.index == i) out.push_back(f.u64);
    return out;
}

UniqueFd Message::take_fd(std::string_view field) {
    uint16_t i = index_of(field, Kind::Fd);
    for (Field& f : fields_)
        if (f.index == i && f.fd.valid()) return std::move(f.fd);
    return UniqueFd();
}

std::vector<UniqueFd> Message::take_all_fds(std::string_view field) {
    uint16_t i = index_of(field, Kind::Fd);
    std::vector<UniqueFd> out;
    for (Field& f : fields_)
        if (f.index == i && f.fd.valid()) out.push_back(std::move(f.fd));
    return out;
}

std::vector<int> Message::fd_list() const {
    std::vector<int> out;
    for (const Field& f : fields_)
        if (spec_->fields[f.index].kind == Kind::Fd) out.push_back(f.fd.get());
    return out;
}

std::vector<UniqueFd> Message::release_fds() {
    std::vector<UniqueFd> out;
    for (Field& f : fields_)
        if (spec_->fields[f.index].kind == Kind::Fd) out.push_back(std::move(f.fd));
    return out;
}

// ---- encoding --------------------------------------------------------------

Result<Encoded> encode(const Message& msg) {
    const MessageSpec& spec = msg.spec();
    const uint32_t limit = msg.protocol().max_frame_size;
    for (size_t i = 0; i < spec.fields.size(); ++i) {
        if (!spec.fields[i].required) continue;
        bool present = false;
        for (const auto& f : msg.fields()) present = present || f.index == i;
        if (!present)
            return fail(log::concat("ipc: ", spec.name, ": required field '", spec.fields[i].name,
                                    "' not set"));
    }
    Encoded out;
    out.fds = msg.fd_list();
    for (int fd : out.fds)
        if (fd < 0) return fail(log::concat("ipc: ", spec.name, ": an fd was taken before send"));
    if (out.fds.size() > kMaxFdsPerFrame)
        return fail(
            log::concat("ipc: ", spec.name, ": ", out.fds.size(), " fds, limit ", kMaxFdsPerFrame));
    // Size first, so that an oversize message fails without building it.
    uint64_t size = kHeaderSize;
    for (const auto& f : msg.fields()) {
        Kind k = spec.fields[f.index].kind;
        size += kFieldHeaderSize + (k == Kind::U64 ? 8 : k == Kind::Fd ? 1 : f.data.size());
    }
    if (size > limit)
        return fail(log::concat("ipc: ", spec.name, ": frame of ", size,
                                " bytes over the limit of ", limit));
    if (msg.fields().size() > 0xffff) return fail("ipc: too many fields");

    std::string& b = out.bytes;
    b.reserve(size);
    put_u32(b, static_cast<uint32_t>(size - 4));
    put_u16(b, kMagic);
    put_u8(b, kWireVersion);
    put_u8(b, static_cast<uint8_t>(out.fds.size()));
    put_u16(b, spec.type);
    put_u16(b, static_cast<uint16_t>(msg.fields().size()));
    uint8_t fd_index = 0;
    for (const auto& f : msg.fields()) {
        put_u16(b, f.index);
        switch (spec.fields[f.index].kind) {
            case Kind::U64:
                put_u32(b, 8);
                put_u64(b, f.u64);
                break;
            case Kind::Str:
            case Kind::Bytes:
                put_u32(b, static_cast<uint32_t>(f.data.size()));
                b += f.data;
                break;
            case Kind::Fd:
                put_u32(b, 1);
                put_u8(b, fd_index++);
                break;
        }
    }
    return out;
}

// ---- decoding --------------------------------------------------------------

uint64_t frame_length(std::string_view prefix) {
    return 4 + get_be(prefix, 0, 4);
}

Result<Message, DecodeError> decode_frame(const Protocol& protocol, std::string_view frame,
                                          std::vector<UniqueFd>& fds) {
    // Whatever happens, the fds are ours now: they close unless a field keeps them.
    std::vector<UniqueFd> owned = std::move(fds);
    fds.clear();
    if (frame.size() < 4)
        return derr(DecodeErrc::Truncated, "frame shorter than its length prefix");
    const uint64_t total = frame_length(frame);
    if (total > protocol.max_frame_size)
        return derr(DecodeErrc::FrameTooLarge,
                    log::concat("frame of ", total, " bytes, limit ", protocol.max_frame_size));
    if (frame.size() < total)
        return derr(DecodeErrc::Truncated,
                    log::concat("frame of ", total, " bytes cut at ", frame.size()));
    if (frame.size() > total)
        return derr(DecodeErrc::TrailingBytes,
                    log::concat(frame.size() - total, " bytes after the frame"));
    if (total < kHeaderSize)
        return derr(DecodeErrc::Truncated, log::concat("frame of ", total, " bytes has no header"));
    if (get_be(frame, 4, 2) != kMagic) return derr(DecodeErrc::BadMagic, "bad magic");
    if (get_be(frame, 6, 1) != kWireVersion)
        return derr(DecodeErrc::BadVersion,
                    log::concat("wire format version ", get_be(frame, 6, 1), ", expected ",
                                static_cast<int>(kWireVersion)));
    const size_t fd_count = get_be(frame, 7, 1);
    const auto type = static_cast<uint16_t>(get_be(frame, 8, 2));
    const size_t field_count = get_be(frame, 10, 2);
    const MessageSpec* spec = find_type(protocol, type);
    if (!spec)
        return derr(DecodeErrc::UnknownType,
                    log::concat("protocol ", protocol.name, " has no message type ", type));
    if (fd_count > kMaxFdsPerFrame || fd_count != owned.size())
        return derr(DecodeErrc::FdMismatch, log::concat(spec->name, ": header declares ", fd_count,
                                                        " fds, ", owned.size(), " received"));

    Message msg(&protocol, spec);
    std::vector<bool> seen(spec->fields.size(), false);
    size_t at = kHeaderSize;
    size_t next_fd = 0;
    for (size_t n = 0; n < field_count; ++n) {
        if (total - at < kFieldHeaderSize)
            return derr(DecodeErrc::Truncated,
                        log::concat(spec->name, ": field ", n, " of ", field_count, " cut off"));
        const size_t index = get_be(frame, at, 2);
        const uint64_t len = get_be(frame, at + 2, 4);
        at += kFieldHeaderSize;
        if (index >= spec->fields.size())
            return derr(DecodeErrc::UnknownField,
                        log::concat(spec->name, ": unknown field index ", index));
        const FieldSpec& fs = spec->fields[index];
        if (len > total - at)
            return derr(DecodeErrc::Truncated,
                        log::concat(spec->name, ".", fs.name, ": value runs past the frame"));
        if (seen[index] && !fs.repeated)
            return derr(DecodeErrc::DuplicateField,
                        log::concat(spec->name, ": field '", fs.name, "' repeated"));
        seen[index] = true;
        std::string_view value = frame.substr(at, len);
        at += len;
        Message::Field f{static_cast<uint16_t>(index)};
        switch (fs.kind) {
            case Kind::U64:
                if (len != 8)
                    return derr(DecodeErrc::BadValue,
                                log::concat(spec->name, ".", fs.name, ": u64 of ", len, " bytes"));
                f.u64 = get_be(value, 0, 8);
                break;
            case Kind::Str:
                if (value.find('\0') != std::string_view::npos)
                    return derr(DecodeErrc::BadValue,
                                log::concat(spec->name, ".", fs.name, ": NUL in str"));
                f.data.assign(value);
                break;
            case Kind::Bytes:
                f.data.assign(value);
                break;
            case Kind::Fd:
                if (len != 1)
                    return derr(DecodeErrc::BadValue, log::concat(spec->name, ".", fs.name,
                                                                  ": fd index of ", len, " bytes"));
                if (static_cast<unsigned char>(value[0]) != next_fd || next_fd >= owned.size())
                    return derr(DecodeErrc::FdMismatch,
                                log::concat(spec->name, ".", fs.name, ": fd index ",
                                            static_cast<int>(static_cast<unsigned char>(value[0])),
                                            ", expected ", next_fd, " of ", owned.size()));
                f.fd = std::move(owned[next_fd++]);
                break;
        }
        msg.fields_.push_back(std::move(f));
    }
    if (at != total)
        return derr(DecodeErrc::TrailingBytes,
                    log::concat(spec->name, ": ", total - at, " bytes after the last field"));
    if (next_fd != owned.size())
        return derr(DecodeErrc::FdMismatch, log::concat(spec->name, ": ", owned.size(),
                                                        " fds received, ", next_fd, " used"));
    for (size_t i = 0; i < spec->fields.size(); ++i)
        if (spec->fields[i].required && !seen[i])
            return derr(DecodeErrc::MissingField, log::concat(spec->name, ": required field '",
                                                              spec->fields[i].name, "' missing"));
    return msg;
}

// ---- hello -----------------------------------------------------------------

Message make_hello(const Protocol& ours) {
    Message m(kHelloProtocol, kHelloType);
    m.set_str("protocol", ours.name);
    m.set_u64("version", ours.version);
    return m;
}

Result<Unit, DecodeError> check_hello(const Protocol& ours, const Message& hello) {
    if (&hello.protocol() != &kHelloProtocol || hello.type() != kHelloType)
        return derr(DecodeErrc::NoHello, "first frame is not a hello");
    std::string_view name = hello.get_str("protocol").value_or("");
    uint64_t version = hello.get_u64("version").value_or(0);
    if (name != ours.name || version != ours.version)
        return derr(DecodeErrc::ProtocolMismatch,
                    log::concat("peer speaks ", escape_value(name, 64), " version ", version,
                                ", we speak ", ours.name, " version ", ours.version));
    return Unit{};
}

// ---- Decoder ---------------------------------------------------------------

Decoder::Decoder(const Protocol& protocol, bool expect_hello)
    : protocol_(&protocol), expect_hello_(expect_hello) {}

void Decoder::feed(std::string_view bytes) {
    if (failed_) return;
    // Reclaim consumed space before growing, so the buffer stays about one frame.
    if (pos_ > 0 && (pos_ == buf_.size() || pos_ >= 64 * 1024)) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    buf_.append(bytes);
}

void Decoder::add_fd(UniqueFd fd) {
    if (failed_) return;
    fds_.push_back(std::move(fd));
}

Result<std::optional<Message>, DecodeError> Decoder::fail(DecodeError e) {
    failed_ = e;
    fds_.clear();
    buf_.clear();
    pos_ = 0;
    return Err<DecodeError>{std::move(e)};
}

Result<std::optional<Message>, DecodeError> Decoder::next() {
    if (failed_) return Err<DecodeError>{*failed_};
    const Protocol& proto = expect_hello_ ? kHelloProtocol : *protocol_;
    // The fds of the frame being read and of the one after it may be queued
    // (one recvmsg can end one frame and start the next); more is abuse.
    if (fds_.size() > 2 * kMaxFdsPerFrame)
        return fail({DecodeErrc::FdMismatch, log::concat(fds_.size(), " fds queued")});
    std::string_view rest = std::string_view(buf_).substr(pos_);
    if (rest.size() < 4) {
        if (rest.empty() && !fds_.empty())
            return fail({DecodeErrc::FdMismatch,
                         log::concat(fds_.size(), " fds received without a frame")});
        return std::optional<Message>();
    }
    const uint64_t total = frame_length(rest);
    if (total > proto.max_frame_size)
        return fail({expect_hello_ ? DecodeErrc::NoHello : DecodeErrc::FrameTooLarge,
                     log::concat(expect_hello_ ? "first frame" : "frame", " of ", total,
                                 " bytes, limit ", proto.max_frame_size)});
    if (rest.size() < total) return std::optional<Message>();
    // The frame's fds came with its first byte, so they are all queued by now.
    const size_t declared = total >= kHeaderSize ? get_be(rest, 7, 1) : 0;
    if (declared > fds_.size())
        return fail({DecodeErrc::FdMismatch,
                     log::concat("frame declares ", declared, " fds, ", fds_.size(), " received")});
    std::vector<UniqueFd> mine;
    for (size_t i = 0; i < declared; ++i) mine.push_back(std::move(fds_[i]));
    fds_.erase(fds_.begin(), fds_.begin() + static_cast<std::ptrdiff_t>(declared));
    auto msg = decode_frame(proto, rest.substr(0, total), mine);
    pos_ += total;
    if (!msg.ok()) {
        DecodeError e = std::move(msg.error());
        if (expect_hello_ && e.code == DecodeErrc::UnknownType)
            e = {DecodeErrc::NoHello, "first frame is not a hello: " + e.text};
        return fail(std::move(e));
    }
    if (expect_hello_) {
        auto ok = check_hello(*protocol_, *msg);
        if (!ok.ok()) return fail(std::move(ok.error()));
        expect_hello_ = false;
        return next();
    }
    if (pos_ == buf_.size() && !fds_.empty())
        return fail({DecodeErrc::FdMismatch,
                     log::concat(fds_.size(), " fds received beyond what the frame declares")});
    return std::optional<Message>(std::move(msg.value()));
}

Result<Unit, DecodeError> Decoder::finish() {
    if (failed_) return Err<DecodeError>{*failed_};
    if (buffered() > 0) {
        auto e = fail({DecodeErrc::Truncated,
                       log::concat("connection closed inside a frame (", buffered(), " bytes)")});
        return Err<DecodeError>{std::move(e.error())};
    }
    if (!fds_.empty()) {
        auto e = fail({DecodeErrc::FdMismatch, "fds received without a frame"});
        return Err<DecodeError>{std::move(e.error())};
    }
    return Unit{};
}

// ---- printing --------------------------------------------------------------

std::string escape_value(std::string_view value, size_t max_value) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    const size_t shown = value.size() < max_value ? value.size() : max_value;
    out.reserve(shown + 16);
    for (size_t i = 0; i < shown; ++i) {
        auto c = static_cast<unsigned char>(value[i]);
        if (c > 0x20 && c < 0x7f && c != '\\') {
            out.push_back(static_cast<char>(c));
        } else {
            out += "\\x";
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
    }
    if (shown < value.size()) out += log::concat("...(+", value.size() - shown, ")");
    return out;
}

std::string to_text(const Protocol& protocol, const Message& msg, size_t max_value) {
    // A hello belongs to kHelloProtocol whatever channel it was read from.
    (void)protocol;
    std::string out = "type=" + std::string(msg.name());
    size_t fd_index = 0;
    for (const auto& f : msg.fields()) {
        const FieldSpec& fs = msg.spec().fields[f.index];
        out += ' ';
        out += fs.name;
        out += '=';
        switch (fs.kind) {
            case Kind::U64:
                out += std::to_string(f.u64);
                break;
            case Kind::Str:
            case Kind::Bytes:
                out += escape_value(f.data, max_value);
                break;
            case Kind::Fd:
                out += log::concat("#", fd_index++);
                break;
        }
    }
    return out;
}

}  // namespace pbx::ipc
