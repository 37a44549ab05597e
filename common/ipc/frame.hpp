// The one framing of every internal channel: typed messages of named fields,
// with fd passing, a version handshake, a size limit and a printer.
//
// A channel's messages are declared once, as constexpr tables, in the channel's
// own header (common/ipc/queue_msgs.hpp, auth_msgs.hpp, ...):
//
//   inline constexpr ipc::FieldSpec kEnqueueFields[] = {
//       {"sender", ipc::Kind::Str, ipc::kRequired},
//       {"rcpt", ipc::Kind::Str, ipc::kRequired, ipc::kRepeated},
//       {"message", ipc::Kind::Fd, ipc::kRequired},
//   };
//   inline constexpr ipc::MessageSpec kQueueMessages[] = {{1, "enqueue", kEnqueueFields}};
//   inline constexpr ipc::Protocol kQueueProtocol{"queue", 1, kQueueMessages, 1 << 20};
//   static_assert(ipc::well_formed(kQueueProtocol));
//
// WIRE FORMAT (all integers big-endian)
//
//   offset size
//   0      4   length of the rest of the frame; the whole frame (these 4 bytes
//              included) is at most Protocol::max_frame_size
//   4      2   magic 0x5042 ("PB")
//   6      1   wire format version, kWireVersion (this layout, not the protocol)
//   7      1   number of fds passed with this frame (<= kMaxFdsPerFrame)
//   8      2   message type id
//   10     2   number of fields that follow
//   12     ... fields, each:
//                2  index of the field's name in the MessageSpec's field list
//                4  length of the value
//                n  value: U64 = 8 bytes; Str = text without NUL; Bytes = any;
//                   Fd = 1 byte, the index of the fd among the frame's fds
//
// Fds travel as SCM_RIGHTS ancillary data attached to the sendmsg() that
// carries the frame's first byte. Fd fields number the frame's fds in order:
// the k-th Fd field in the body holds k, and the frame carries exactly as many
// fds as it has Fd fields.
//
// Decoding is strict (STYLE item 5): an unknown type or field index, a missing
// required field, a repeated non-repeated field, a value of the wrong length,
// a NUL in a Str, a wrong fd count, an oversize frame or bytes after the last
// field each give a DecodeError; nothing is guessed or skipped.
//
// HANDSHAKE: the first frame each side sends on a connection is a hello
// (type 0 of the built-in kHelloProtocol) naming the protocol and its version;
// a peer whose hello names another protocol or version is refused. Type 0 is
// therefore reserved in every protocol.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace pbx::ipc {

inline constexpr uint16_t kMagic = 0x5042;
inline constexpr uint8_t kWireVersion = 1;
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kFieldHeaderSize = 6;
// Fds one frame may carry; also sizes the recvmsg() control buffer.
inline constexpr size_t kMaxFdsPerFrame = 16;
// No protocol may declare a larger frame (the length prefix is a u32).
inline constexpr uint32_t kMaxFrameSizeCap = 1u << 30;
inline constexpr uint16_t kHelloType = 0;

enum class Kind : uint8_t { U64, Str, Bytes, Fd };

inline constexpr bool kRequired = true;
inline constexpr bool kOptional = false;
inline constexpr bool kRepeated = true;

struct FieldSpec {
    std::string_view name;
    Kind kind;
    bool required = kOptional;
    bool repeated = false;
};

struct MessageSpec {
    uint16_t type;
    std::string_view name;
    std::span<const FieldSpec> fields;
};

struct Protocol {
    std::string_view name;
    uint16_t version;
    std::span<const MessageSpec> messages;
    uint32_t max_frame_size;  // whole frame, length prefix included
};

// Compile-time check for a protocol table: type ids non-zero and unique,
// field names non-empty and unique per message, frame limit sane.
constexpr bool well_formed(const Protocol& p) {
    if (p.name.empty() || p.max_frame_size < kHeaderSize || p.max_frame_size > kMaxFrameSizeCap)
        return false;
    for (size_t i = 0; i < p.messages.size(); ++i) {
        const MessageSpec& m = p.messages[i];
        if (m.type == kHelloType || m.name.empty() || m.fields.size() > 0xffff) return false;
        for (size_t j = 0; j < i; ++j)
            if (p.messages[j].type == m.type || p.messages[j].name == m.name) return false;
        for (size_t f = 0; f < m.fields.size(); ++f) {
            if (m.fields[f].name.empty()) return false;
            for (size_t g = 0; g < f; ++g)
                if (m.fields[g].name == m.fields[f].name) return false;
        }
    }
    return true;
}

// The built-in protocol of the hello frame: hello{protocol: Str, version: U64}.
extern const Protocol kHelloProtocol;

enum class DecodeErrc {
    Truncated,         // the frame (or its header, or a field) ends early
    FrameTooLarge,     // length prefix over the protocol's max_frame_size
    BadMagic,          // not a Pillarbox frame
    BadVersion,        // another wire format version
    UnknownType,       // type id not in the protocol
    UnknownField,      // field index not in the message's spec
    MissingField,      // a required field is absent
    DuplicateField,    // a non-repeated field appears twice
    BadValue,          // wrong length for the kind, or NUL in a Str
    TrailingBytes,     // bytes after the last declared field / after the frame
    FdMismatch,        // fd count in header, Fd fields and received fds disagree
    NoHello,           // the first frame is not a hello
    ProtocolMismatch,  // the hello names another protocol or version
};

std::string_view to_string(DecodeErrc code);

struct DecodeError {
    DecodeErrc code = DecodeErrc::Truncated;
    std::string text;
};

// One message: its type and its fields in order. Move-only (fds). Setting or
// getting a field the message type does not declare, or with the wrong kind,
// is a programming error and aborts: that is a bug in the program, never
// something a peer can cause (decoding checks peers' frames first).
class Message {
  public:
    // Aborts when `type` is not in `protocol`. The protocol is a static table
    // and must outlive the message.
    Message(const Protocol& protocol, uint16_t type);
    static Message named(const Protocol& protocol, std::string_view type_name);

    Message(Message&&) noexcept = default;
    Message& operator=(Message&&) noexcept = default;

    const Protocol& protocol() const { return *protocol_; }
    const MessageSpec& spec() const { return *spec_; }
    uint16_t type() const { return spec_->type; }
    std::string_view name() const { return spec_->name; }

    // Set a field; a non-repeated field is replaced, a repeated one appended to.
    Message& set_u64(std::string_view field, uint64_t value);
    Message& set_str(std::string_view field, std::string_view value);  // aborts on NUL
    Message& set_bytes(std::string_view field, std::string_view value);
    Message& add_fd(std::string_view field, UniqueFd fd);  // aborts on an invalid fd

    bool has(std::string_view field) const;
    // The first (for a non-repeated field: the only) value; nullopt if absent.
    // Views point into the message and live as long as it does.
    std::optional<uint64_t> get_u64(std::string_view field) const;
    std::optional<std::string_view> get_str(std::string_view field) const;
    std::optional<std::string_view> get_bytes(std::string_view field) const;
    // Every value of a (repeated) Str or Bytes field, in order.
    std::vector<std::string_view> get_all(std::string_view field) const;
    std::vector<uint64_t> get_all_u64(std::string_view field) const;
    // Moves the first fd still held by the field out; invalid if none is left.
    UniqueFd take_fd(std::string_view field);
    std::vector<UniqueFd> take_all_fds(std::string_view field);

    // The fds in wire order (the order of the Fd fields), for the sender.
    std::vector<int> fd_list() const;
    // Moves every fd out in wire order; used by a sender that must keep the
    // fds open until sendmsg() has passed them.
    std::vector<UniqueFd> release_fds();

    struct Field {
        uint16_t index;  // into spec().fields
        uint64_t u64 = 0;
        std::string data;  // Str and Bytes
        UniqueFd fd;       // Fd (invalid once taken)
    };
    const std::vector<Field>& fields() const { return fields_; }

  private:
    friend Result<Message, DecodeError> decode_frame(const Protocol&, std::string_view,
                                                     std::vector<UniqueFd>&);
    Message(const Protocol* p, const MessageSpec* s) : protocol_(p), spec_(s) {}
    uint16_t index_of(std::string_view field, Kind kind) const;  // aborts if undeclared
    Field& slot(uint16_t index);

    const Protocol* protocol_;
    const MessageSpec* spec_;
    std::vector<Field> fields_;
};

struct Encoded {
    std::string bytes;
    std::vector<int> fds;  // borrowed from the message, in wire order
};

// Encodes one frame. Fails (no abort) when a required field is missing, the
// frame would exceed max_frame_size, or there are more than kMaxFdsPerFrame fds.
Result<Encoded> encode(const Message& msg);

// Decodes exactly one whole frame (length prefix included), taking ownership
// of `fds`, the fds received with it; on success `fds` is empty.
Result<Message, DecodeError> decode_frame(const Protocol& protocol, std::string_view frame,
                                          std::vector<UniqueFd>& fds);

// The length a frame whose first 4 bytes are `prefix` will have in total.
uint64_t frame_length(std::string_view prefix);

// Hello helpers (both sides send one; see HANDSHAKE above).
Message make_hello(const Protocol& ours);
Result<Unit, DecodeError> check_hello(const Protocol& ours, const Message& hello);

// Incremental decoder for one connection. Feed it what recvmsg() returned
// (bytes first, then the fds that came with them) and call next() until it
// returns nullopt. Fds are matched to frames first in, first out. The buffer
// holds at most one partial frame: a length prefix over the limit is refused
// as soon as its 4 bytes are in. After an error the decoder stays failed.
class Decoder {
  public:
    // With expect_hello (the default for connections), the first frame must be
    // a hello for `protocol`; it is checked and swallowed, never returned.
    explicit Decoder(const Protocol& protocol, bool expect_hello = true);

    void feed(std::string_view bytes);
    void add_fd(UniqueFd fd);
    Result<std::optional<Message>, DecodeError> next();
    // At end of input: an error if part of a frame or an unclaimed fd is left.
    Result<Unit, DecodeError> finish();

    bool hello_seen() const { return !expect_hello_; }
    size_t buffered() const { return buf_.size() - pos_; }
    size_t pending_fds() const { return fds_.size(); }

  private:
    Result<std::optional<Message>, DecodeError> fail(DecodeError e);

    const Protocol* protocol_;
    bool expect_hello_;
    std::string buf_;
    size_t pos_ = 0;
    std::vector<UniqueFd> fds_;
    std::optional<DecodeError> failed_;
};

// One printable line, Postfix style: `type=enqueue sender=a@b rcpt=c@d fd=#0`.
// Bytes outside 0x21..0x7e and the backslash are written as \xHH, so a value
// can never break the line or the name=value structure; a value longer than
// `max_value` bytes is cut and marked `...(+N)`.
std::string to_text(const Protocol& protocol, const Message& msg, size_t max_value = 256);
std::string escape_value(std::string_view value, size_t max_value = 256);

}  // namespace pbx::ipc
