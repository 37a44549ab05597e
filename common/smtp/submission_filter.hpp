// The one place where submitd looks into a message (RFC 6409 §8): it holds
// the header section as the text streams from the engine to the queue, adds
// Date: and Message-ID: when they are missing (at the end of the header
// section, as sendmail's local fix-ups do), and collects the From: addresses
// that the session then checks against what the user owns. Everything after
// the header section passes through untouched. Pure: the Date: value and the
// Message-ID: come from the caller.
//
//   SubmissionFilter f(options);
//   out = f.feed(chunk) ...       forward `out` to the queue (may be empty
//                                 while the header section is held)
//   out = f.finish()              at the end of the message
//   f.header_done(), f.from(), f.problem()
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pbx::smtp {

class SubmissionFilter {
  public:
    struct Options {
        std::string date;                // value of a missing Date: (rfc5322_date)
        std::string message_id;          // value of a missing Message-ID:, "<...>"
        size_t max_header = 256 * 1024;  // header section held at most
        size_t max_from = 20;            // From: addresses at most
    };
    enum class Problem {
        None,
        HeaderTooLarge,  // no end of the header section within max_header
        BadFrom,         // a From: field that is not an address list
        TooManyFrom,     // more than max_from From: addresses
    };

    explicit SubmissionFilter(Options options) : options_(std::move(options)) {}

    // Message text (CRLF lines, dot-unstuffed) in; what may go on out.
    std::string feed(std::string_view bytes);
    // The end of the message: the rest of what was held.
    std::string finish();

    // The header section was seen whole (and fixed up).
    bool header_done() const { return done_; }
    // The addr-specs of every From: field, in order (valid once header_done).
    const std::vector<std::string>& from() const { return from_; }
    Problem problem() const { return problem_; }
    // The fields added ("Date", "Message-ID"), for the log.
    const std::vector<std::string>& added() const { return added_; }

  private:
    std::string process_header(bool at_end);

    Options options_;
    std::string held_;
    bool done_ = false;
    Problem problem_ = Problem::None;
    std::vector<std::string> from_;
    std::vector<std::string> added_;
};

}  // namespace pbx::smtp
