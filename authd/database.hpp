// The users and aliases files as authd serves them: loaded at start, re-read
// when a file's inode, size or mtime changes (looked at no more than once a
// second, when a request comes), so `pillarbox user add` and `newaliases`
// take effect without a restart. A file that fails to parse on reload is
// logged with file:line and the previous content stays in use; a missing
// file means "no entries" (logged once).
#pragma once

#include <chrono>
#include <string>

#include "common/auth/aliases.hpp"
#include "common/auth/textfile.hpp"
#include "common/auth/throttle.hpp"
#include "common/auth/users.hpp"

namespace pbx::authd {

class Database {
  public:
    Database(std::string users_path, std::string aliases_path,
             std::chrono::milliseconds check_interval = std::chrono::seconds(1));

    // Looks at the files (stat) if check_interval has passed since the last
    // look, and reloads the ones that changed.
    void refresh(auth::Clock::time_point now);
    // Looks and reloads now.
    void reload_now();

    // False while a file that exists has never been read successfully (it was
    // unreadable or bad since start): answers must then be "try again later",
    // never "no such user".
    bool ready() const { return users_.ready && aliases_.ready; }

    const auth::UserTable& users() const { return users_.table; }
    const auth::AliasMap& aliases() const { return aliases_.table; }
    // Of the aliases file in use (owner and mode decide whether its commands,
    // files and :include: targets are honoured).
    const auth::FileStamp& aliases_stamp() const { return aliases_.loaded; }

  private:
    template <class Table>
    struct Source {
        std::string what;  // "users file"
        std::string path;
        Table table;
        auth::FileStamp loaded;  // of the content in use (exists == false: none)
        auth::FileStamp failed;  // of the last version that failed, not retried
        bool ready = false;
        bool missing_logged = false;
        std::string last_error;  // logged once per distinct error
    };
    template <class Table, class Parse>
    void check(Source<Table>& src, Parse parse, size_t max_size);

    Source<auth::UserTable> users_;
    Source<auth::AliasMap> aliases_;
    std::chrono::milliseconds interval_;
    auth::Clock::time_point last_check_{};
    bool checked_once_ = false;
};

}  // namespace pbx::authd
