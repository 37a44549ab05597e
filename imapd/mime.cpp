#include "imapd/mime.hpp"

#include <algorithm>
#include <cctype>

#include "imapd/parser.hpp"

namespace pbx::imap {

namespace {

bool is_wsp(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() && (is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

// One header field: its name, the whole raw text (with its CRLFs) and the
// unfolded value.
struct Field {
    std::string_view name;
    std::string_view raw;
    std::string_view raw_value;
};

// Calls f(Field) for each field of `header` (which may end in the blank line).
template <class F>
void for_each_field(std::string_view header, F f) {
    size_t pos = 0;
    while (pos < header.size()) {
        size_t start = pos;
        // A field runs to the end of a line not followed by WSP.
        size_t end = start;
        for (;;) {
            size_t lf = header.find('\n', end);
            if (lf == std::string_view::npos) {
                end = header.size();
                break;
            }
            end = lf + 1;
            if (end >= header.size() || !is_wsp(header[end])) break;
        }
        pos = end;
        std::string_view raw = header.substr(start, end - start);
        if (trim(raw).empty()) break;  // the blank line
        size_t colon = raw.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view name = raw.substr(0, colon);
        while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
        f(Field{name, raw, raw.substr(colon + 1)});
    }
}

std::string unfold(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v)
        if (c != '\r' && c != '\n') out += c;
    return std::string(trim(out));
}

// Offset of the body of the entity at msg[start, end): after the first empty
// line; `end` when there is none.
size_t find_body(std::string_view msg, size_t start, size_t end) {
    std::string_view e = msg.substr(start, end - start);
    if (e.substr(0, 2) == "\r\n") return start + 2;
    if (e.substr(0, 1) == "\n") return start + 1;
    size_t a = e.find("\r\n\r\n");
    size_t b = e.find("\n\n");
    if (a == std::string_view::npos && b == std::string_view::npos) return end;
    if (b != std::string_view::npos && (a == std::string_view::npos || b + 1 < a + 2))
        return start + b + 2;
    return start + a + 4;
}

// RFC 2045 Content-Type / Content-Disposition: a value and ;-parameters.
struct Structured {
    std::string value;
    std::vector<std::pair<std::string, std::string>> params;
};

Structured parse_structured(std::string_view v) {
    Structured s;
    size_t i = 0;
    auto skip_ws = [&] {
        for (;;) {
            while (i < v.size() && (is_wsp(v[i]) || v[i] == '\r' || v[i] == '\n')) ++i;
            if (i < v.size() && v[i] == '(') {  // a comment
                int depth = 0;
                while (i < v.size()) {
                    if (v[i] == '\\') {
                        i += 2;
                        continue;
                    }
                    if (v[i] == '(') ++depth;
                    if (v[i] == ')' && --depth == 0) {
                        ++i;
                        break;
                    }
                    ++i;
                }
                continue;
            }
            break;
        }
    };
    auto token = [&](std::string_view stop) {
        std::string t;
        skip_ws();
        if (i < v.size() && v[i] == '"') {
            ++i;
            while (i < v.size() && v[i] != '"') {
                if (v[i] == '\\' && i + 1 < v.size()) ++i;
                t += v[i++];
            }
            if (i < v.size()) ++i;
            return t;
        }
        while (i < v.size() && stop.find(v[i]) == std::string_view::npos && !is_wsp(v[i]) &&
               v[i] != '\r' && v[i] != '\n' && v[i] != '(')
            t += v[i++];
        return t;
    };
    s.value = token(";");
    while (i < v.size()) {
        skip_ws();
        if (i >= v.size() || v[i] != ';') {
            // Junk: skip to the next ';'.
            size_t semi = v.find(';', i);
            if (semi == std::string_view::npos) break;
            i = semi;
        }
        ++i;
        std::string name = token("=;");
        skip_ws();
        if (i >= v.size() || v[i] != '=') continue;
        ++i;
        std::string value = token(";");
        if (!name.empty() && s.params.size() < 64) s.params.emplace_back(upper(name), value);
    }
    return s;
}

void parse_entity(std::string_view msg, size_t start, size_t end, MimePart& part, size_t depth,
                  size_t& count, const MimeLimits& limits, bool digest_default) {
    part.start = start;
    part.end = end;
    part.body = find_body(msg, start, end);
    std::string_view header = msg.substr(start, part.body - start);
    if (digest_default) {
        part.type = "MESSAGE";
        part.subtype = "RFC822";
    }
    bool have_ct = false;
    for_each_field(header, [&](const Field& f) {
        if (have_ct || !iequals(f.name, "Content-Type")) return;
        have_ct = true;
        Structured ct = parse_structured(unfold(f.raw_value));
        size_t slash = ct.value.find('/');
        if (slash == std::string::npos || slash == 0 || slash + 1 == ct.value.size()) return;
        part.type = upper(ct.value.substr(0, slash));
        part.subtype = upper(ct.value.substr(slash + 1));
        part.params = std::move(ct.params);
    });
    if (!have_ct || part.params.empty()) {
        if (part.type == "TEXT" && part.subtype == "PLAIN" && !have_ct)
            part.params.emplace_back("CHARSET", "us-ascii");
    }
    if (depth >= limits.max_depth || ++count > limits.max_parts) {
        if (part.multipart() || part.message()) {
            part.type = "APPLICATION";
            part.subtype = "OCTET-STREAM";
        }
        return;
    }
    if (part.message()) {
        part.children.emplace_back();
        parse_entity(msg, part.body, end, part.children.back(), depth + 1, count, limits, false);
        return;
    }
    if (!part.multipart()) return;
    std::string boundary;
    for (const auto& [k, v] : part.params)
        if (k == "BOUNDARY") boundary = v;
    bool digest = part.subtype == "DIGEST";
    if (!boundary.empty()) {
        std::string delim = "--" + boundary;
        size_t pos = part.body;
        size_t part_start = std::string_view::npos;
        while (pos < end) {
            size_t lf = msg.find('\n', pos);
            size_t line_end = lf == std::string_view::npos || lf >= end ? end : lf + 1;
            std::string_view line = msg.substr(pos, line_end - pos);
            if (line.substr(0, delim.size()) == delim) {
                std::string_view rest = line.substr(delim.size());
                bool close = rest.substr(0, 2) == "--";
                if (close || trim(rest).empty()) {
                    if (part_start != std::string_view::npos) {
                        // The CRLF before the delimiter belongs to it.
                        size_t content_end = pos;
                        if (content_end > part_start && msg[content_end - 1] == '\n') {
                            --content_end;
                            if (content_end > part_start && msg[content_end - 1] == '\r')
                                --content_end;
                        }
                        part.children.emplace_back();
                        parse_entity(msg, part_start, content_end, part.children.back(), depth + 1,
                                     count, limits, digest);
                        if (count > limits.max_parts) break;
                    }
                    if (close) {
                        part_start = std::string_view::npos;
                        break;
                    }
                    part_start = line_end;
                }
            }
            pos = line_end;
        }
        if (part_start != std::string_view::npos && part_start <= end &&
            count <= limits.max_parts) {
            part.children.emplace_back();
            parse_entity(msg, part_start, end, part.children.back(), depth + 1, count, limits,
                         digest);
        }
    }
    if (part.children.empty()) {
        // RFC 3501 needs at least one part: an empty text/plain one.
        MimePart empty;
        empty.start = empty.body = empty.end = end;
        empty.params.emplace_back("CHARSET", "us-ascii");
        part.children.push_back(std::move(empty));
    }
}

// ---- addresses (RFC 5322 §3.4) for ENVELOPE --------------------------------

struct Token {
    enum Kind { Word, Quoted, Special, DomainLiteral } kind;
    std::string text;
};

std::vector<Token> tokenize_addresses(std::string_view v) {
    std::vector<Token> out;
    size_t i = 0;
    while (i < v.size() && out.size() < 10000) {
        char c = v[i];
        if (is_wsp(c) || c == '\r' || c == '\n') {
            ++i;
        } else if (c == '(') {
            int depth = 0;
            while (i < v.size()) {
                if (v[i] == '\\') {
                    i += 2;
                    continue;
                }
                if (v[i] == '(') ++depth;
                if (v[i] == ')' && --depth == 0) {
                    ++i;
                    break;
                }
                ++i;
            }
        } else if (c == '"') {
            std::string t;
            ++i;
            while (i < v.size() && v[i] != '"') {
                if (v[i] == '\\' && i + 1 < v.size()) ++i;
                if (v[i] != '\r' && v[i] != '\n') t += v[i];
                ++i;
            }
            ++i;
            out.push_back({Token::Quoted, t});
        } else if (c == '[') {
            size_t close = v.find(']', i);
            if (close == std::string_view::npos) close = v.size() - 1;
            out.push_back({Token::DomainLiteral, std::string(v.substr(i, close - i + 1))});
            i = close + 1;
        } else if (std::string_view("<>,:;@.").find(c) != std::string_view::npos) {
            out.push_back({Token::Special, std::string(1, c)});
            ++i;
        } else {
            std::string t;
            while (i < v.size() && !is_wsp(v[i]) && v[i] != '\r' && v[i] != '\n' &&
                   std::string_view("()<>,:;@.\"[").find(v[i]) == std::string_view::npos)
                t += v[i++];
            out.push_back({Token::Word, t});
        }
    }
    return out;
}

struct Address {
    std::optional<std::string> name, adl, mailbox, host;
};

// "local@domain" tokens → mailbox/host.
void addr_spec(const std::vector<Token>& toks, size_t a, size_t b, Address& out) {
    std::string local, domain;
    bool at = false;
    for (size_t k = a; k < b; ++k) {
        if (toks[k].kind == Token::Special && toks[k].text == "@" && !at) {
            at = true;
            continue;
        }
        (at ? domain : local) += toks[k].text;
    }
    out.mailbox = local;
    if (at) out.host = domain;
}

std::vector<Address> parse_addresses(std::string_view v) {
    std::vector<Token> toks = tokenize_addresses(v);
    std::vector<Address> out;
    size_t item_start = 0;
    bool angle_done = false;
    bool in_group = false;
    auto phrase = [&](size_t a, size_t b) {
        std::string p;
        for (size_t k = a; k < b; ++k) {
            if (toks[k].kind == Token::Special && toks[k].text != ".") continue;
            if (!p.empty() && toks[k].text != "." && p.back() != '.') p += ' ';
            p += toks[k].text;
        }
        return p;
    };
    auto finish_item = [&](size_t end) {
        if (!angle_done && end > item_start) {
            Address a;
            addr_spec(toks, item_start, end, a);
            if (a.mailbox && !a.mailbox->empty()) out.push_back(a);
        }
        angle_done = false;
        item_start = end + 1;
    };
    for (size_t k = 0; k < toks.size() && out.size() < 1000; ++k) {
        const Token& t = toks[k];
        if (t.kind != Token::Special) continue;
        if (t.text == "<") {
            size_t close = k + 1;
            while (close < toks.size() &&
                   !(toks[close].kind == Token::Special && toks[close].text == ">"))
                ++close;
            Address a;
            std::string name = phrase(item_start, k);
            if (!name.empty()) a.name = name;
            size_t spec = k + 1;
            // A route "@a,@b:" before the addr-spec.
            for (size_t r = k + 1; r < close; ++r)
                if (toks[r].kind == Token::Special && toks[r].text == ":") {
                    std::string adl;
                    for (size_t q = k + 1; q < r; ++q) adl += toks[q].text;
                    a.adl = adl;
                    spec = r + 1;
                }
            addr_spec(toks, spec, close, a);
            out.push_back(a);
            angle_done = true;
            k = close;
        } else if (t.text == ":" && !in_group) {
            Address g;
            g.mailbox = phrase(item_start, k);
            out.push_back(g);
            in_group = true;
            item_start = k + 1;
        } else if (t.text == ";" && in_group) {
            finish_item(k);
            out.push_back(Address{});  // end of group
            in_group = false;
        } else if (t.text == ",") {
            finish_item(k);
        }
    }
    finish_item(toks.size());
    if (in_group) out.push_back(Address{});
    return out;
}

std::string address_list(std::string_view header, std::string_view name) {
    auto v = header_field(header, name);
    if (!v) return "NIL";
    auto addrs = parse_addresses(*v);
    if (addrs.empty()) return "NIL";
    std::string out = "(";
    for (const auto& a : addrs)
        out += "(" + quote_nstring(a.name) + " " + quote_nstring(a.adl) + " " +
               quote_nstring(a.mailbox) + " " + quote_nstring(a.host) + ")";
    return out + ")";
}

std::string nfield(std::string_view header, std::string_view name) {
    return quote_nstring(header_field(header, name));
}

std::string params_list(const std::vector<std::pair<std::string, std::string>>& params) {
    if (params.empty()) return "NIL";
    std::string out = "(";
    for (size_t i = 0; i < params.size(); ++i) {
        if (i) out += ' ';
        out += quote_string(params[i].first) + " " + quote_string(params[i].second);
    }
    return out + ")";
}

std::string disposition(std::string_view header) {
    auto v = header_field(header, "Content-Disposition");
    if (!v) return "NIL";
    Structured s = parse_structured(*v);
    if (s.value.empty()) return "NIL";
    return "(" + quote_string(upper(s.value)) + " " + params_list(s.params) + ")";
}

std::string language(std::string_view header) {
    auto v = header_field(header, "Content-Language");
    if (!v) return "NIL";
    std::vector<std::string> langs;
    std::string cur;
    for (char c : *v) {
        if (c == ',' || is_wsp(c)) {
            if (!cur.empty()) langs.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) langs.push_back(cur);
    if (langs.empty()) return "NIL";
    if (langs.size() == 1) return quote_string(langs[0]);
    std::string out = "(";
    for (size_t i = 0; i < langs.size(); ++i) out += (i ? " " : "") + quote_string(langs[i]);
    return out + ")";
}

size_t count_lines(std::string_view s) {
    size_t n = static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
    if (!s.empty() && s.back() != '\n') ++n;
    return n;
}

void structure(std::string_view msg, const MimePart& p, bool ext, std::string& out) {
    std::string_view header = msg.substr(p.start, p.body - p.start);
    if (p.multipart()) {
        out += '(';
        for (const auto& c : p.children) structure(msg, c, ext, out);
        out += ' ' + quote_string(p.subtype);
        if (ext)
            out += " " + params_list(p.params) + " " + disposition(header) + " " +
                   language(header) + " " + nfield(header, "Content-Location");
        out += ')';
        return;
    }
    std::string_view body = msg.substr(p.body, p.end - p.body);
    std::string enc = "7BIT";
    if (auto cte = header_field(header, "Content-Transfer-Encoding"); cte && !cte->empty())
        enc = upper(*cte);
    out += "(" + quote_string(p.type) + " " + quote_string(p.subtype) + " " +
           params_list(p.params) + " " + nfield(header, "Content-ID") + " " +
           nfield(header, "Content-Description") + " " + quote_string(enc) + " " +
           std::to_string(body.size());
    if (p.message() && !p.children.empty()) {
        out += " " + envelope(msg, p.children[0]) + " ";
        structure(msg, p.children[0], ext, out);
        out += " " + std::to_string(count_lines(body));
    } else if (p.type == "TEXT") {
        out += " " + std::to_string(count_lines(body));
    }
    if (ext)
        out += " " + nfield(header, "Content-MD5") + " " + disposition(header) + " " +
               language(header) + " " + nfield(header, "Content-Location");
    out += ')';
}

// The entity a part path ("1.2") names, or nullptr.
const MimePart* find_part(const MimePart& root, std::string_view path) {
    const MimePart* node = &root;
    bool first = true;
    size_t pos = 0;
    while (pos < path.size()) {
        size_t dot = path.find('.', pos);
        if (dot == std::string_view::npos) dot = path.size();
        std::string_view num = path.substr(pos, dot - pos);
        pos = dot + 1;
        size_t k = 0;
        for (char c : num) k = k * 10 + static_cast<size_t>(c - '0');
        if (k == 0) return nullptr;
        if (!first && node->message() && !node->children.empty()) node = &node->children[0];
        first = false;
        if (node->multipart()) {
            if (k > node->children.size()) return nullptr;
            node = &node->children[k - 1];
        } else if (k != 1) {
            return nullptr;
        }
    }
    return node;
}

struct SectionSpec {
    std::string path;  // "1.2" or ""
    std::string text;  // "", HEADER, TEXT, MIME, HEADER.FIELDS, HEADER.FIELDS.NOT
    std::vector<std::string> fields;
};

std::optional<SectionSpec> parse_section(std::string_view s) {
    SectionSpec spec;
    size_t i = 0;
    // Part numbers.
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        size_t start = i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
        if (s[start] == '0' || i - start > 6) return std::nullopt;
        if (!spec.path.empty()) spec.path += '.';
        spec.path += std::string(s.substr(start, i - start));
        if (i < s.size()) {
            if (s[i] != '.') return std::nullopt;
            ++i;
            if (i >= s.size()) return std::nullopt;
        }
    }
    std::string_view rest = s.substr(i);
    size_t sp = rest.find(' ');
    std::string word = upper(rest.substr(0, sp));
    if (word.empty()) return spec;
    if (word == "HEADER" || word == "TEXT" || (word == "MIME" && !spec.path.empty())) {
        if (sp != std::string_view::npos) return std::nullopt;
        spec.text = word;
        return spec;
    }
    if (word != "HEADER.FIELDS" && word != "HEADER.FIELDS.NOT") return std::nullopt;
    spec.text = word;
    if (sp == std::string_view::npos) return std::nullopt;
    std::string_view list = rest.substr(sp + 1);
    if (list.size() < 3 || list.front() != '(' || list.back() != ')') return std::nullopt;
    list = list.substr(1, list.size() - 2);
    size_t p = 0;
    while (p < list.size()) {
        size_t e = list.find(' ', p);
        if (e == std::string_view::npos) e = list.size();
        std::string_view f = list.substr(p, e - p);
        if (f.size() >= 2 && f.front() == '"' && f.back() == '"') f = f.substr(1, f.size() - 2);
        if (f.empty()) return std::nullopt;
        spec.fields.emplace_back(f);
        p = e + 1;
    }
    if (spec.fields.empty()) return std::nullopt;
    return spec;
}

}  // namespace

std::string to_crlf(std::string_view text) {
    std::string out;
    out.reserve(text.size() + text.size() / 32);
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) out += '\r';
        out += text[i];
    }
    return out;
}

size_t crlf_size(std::string_view text) {
    size_t n = text.size();
    for (size_t i = 0; i < text.size(); ++i)
        if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) ++n;
    return n;
}

MimePart parse_mime(std::string_view msg, const MimeLimits& limits) {
    MimePart root;
    size_t count = 0;
    parse_entity(msg, 0, msg.size(), root, 0, count, limits, false);
    return root;
}

std::vector<std::pair<std::string_view, std::string>> header_field_list(std::string_view header) {
    std::vector<std::pair<std::string_view, std::string>> out;
    for_each_field(header, [&](const Field& f) { out.emplace_back(f.name, unfold(f.raw_value)); });
    return out;
}

std::optional<std::string> header_field(std::string_view header, std::string_view name) {
    std::optional<std::string> out;
    for_each_field(header, [&](const Field& f) {
        if (!out && iequals(f.name, name)) out = unfold(f.raw_value);
    });
    return out;
}

std::string envelope(std::string_view msg, const MimePart& root) {
    std::string_view h = msg.substr(root.start, root.body - root.start);
    std::string from = address_list(h, "From");
    std::string sender = address_list(h, "Sender");
    std::string reply_to = address_list(h, "Reply-To");
    if (sender == "NIL") sender = from;
    if (reply_to == "NIL") reply_to = from;
    return "(" + nfield(h, "Date") + " " + nfield(h, "Subject") + " " + from + " " + sender + " " +
           reply_to + " " + address_list(h, "To") + " " + address_list(h, "Cc") + " " +
           address_list(h, "Bcc") + " " + nfield(h, "In-Reply-To") + " " + nfield(h, "Message-ID") +
           ")";
}

std::string bodystructure(std::string_view msg, const MimePart& root, bool extended) {
    std::string out;
    structure(msg, root, extended, out);
    return out;
}

std::string header_fields(std::string_view header, const std::vector<std::string>& names,
                          bool not_) {
    std::string out;
    for_each_field(header, [&](const Field& f) {
        bool listed = std::any_of(names.begin(), names.end(),
                                  [&](const std::string& n) { return iequals(n, f.name); });
        if (listed != not_) out += f.raw;
    });
    return out + "\r\n";
}

bool valid_section(std::string_view section) {
    return parse_section(section).has_value();
}

std::optional<std::string> body_section(std::string_view msg, const MimePart& root,
                                        std::string_view section) {
    auto spec = parse_section(section);
    if (!spec) return std::nullopt;
    const MimePart* node = spec->path.empty() ? &root : find_part(root, spec->path);
    if (!node) return std::string();
    if (spec->text.empty()) {
        if (spec->path.empty()) return std::string(msg);
        return std::string(msg.substr(node->body, node->end - node->body));
    }
    if (spec->text == "MIME") return std::string(msg.substr(node->start, node->body - node->start));
    // HEADER, TEXT, HEADER.FIELDS: of the message itself or of an
    // encapsulated message/rfc822 part.
    const MimePart* m = node;
    if (!spec->path.empty()) {
        if (!node->message() || node->children.empty()) return std::string();
        m = &node->children[0];
    }
    std::string_view header = msg.substr(m->start, m->body - m->start);
    if (spec->text == "HEADER") {
        std::string h(header);
        if (m->body == m->end && (h.size() < 2 || h.substr(h.size() - 2) != "\r\n")) h += "\r\n";
        return h;
    }
    if (spec->text == "TEXT") return std::string(msg.substr(m->body, m->end - m->body));
    return header_fields(header, spec->fields, spec->text == "HEADER.FIELDS.NOT");
}

}  // namespace pbx::imap
