// What a ~/.forward asks for, decided by the parent from the text the child
// (running as the user) read: a pure function, tested with tables.
//
//   \user, user, user@our.domain, user+detail@our.domain   the user's own
//        mailbox, without looking at .forward again (self)
//   any other name or address                              forwarded (a new
//        copy through the queue; bare names get the recipient's domain)
//   |command, /file                                        run / written as
//        the user
//   :include:, a syntax error                              the whole file is
//        ignored (`ignored` says why) and the mail goes to the mailbox
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/auth/resolve.hpp"

namespace pbx::local {

struct ForwardPlan {
    std::string ignored;  // non-empty: the file is not used, deliver to the mailbox
    bool self = false;    // also (or only) the user's own mailbox
    std::vector<std::string> commands;
    std::vector<std::string> files;
    std::vector<std::string> forward_to;  // addresses, each once, in file order

    // Number of deliveries this plan makes (1 when ignored).
    size_t deliveries() const;
};

// `user`: the file's owner (lower case); `rcpt`: the recipient being
// delivered (for the domain of bare names); `fallback_domain` when `rcpt`
// has none.
ForwardPlan plan_dotforward(std::string_view text, std::string_view user, std::string_view rcpt,
                            const auth::ResolverSettings& settings,
                            std::string_view fallback_domain);

}  // namespace pbx::local
