#include "authd/database.hpp"

#include <cerrno>

#include "common/log.hpp"

namespace pbx::authd {

Database::Database(std::string users_path, std::string aliases_path,
                   std::chrono::milliseconds check_interval)
    : interval_(check_interval) {
    users_.what = "users file";
    users_.path = std::move(users_path);
    aliases_.what = "aliases file";
    aliases_.path = std::move(aliases_path);
}

void Database::refresh(auth::Clock::time_point now) {
    if (checked_once_ && now - last_check_ < interval_) return;
    checked_once_ = true;
    last_check_ = now;
    reload_now();
}

void Database::reload_now() {
    auth::UsersLimits ul;
    check(
        users_,
        [&](std::string_view text) { return auth::UserTable::parse(text, users_.path, ul); },
        ul.max_file);
    auth::AliasesLimits al;
    check(
        aliases_,
        [&](std::string_view text) { return auth::AliasMap::parse(text, aliases_.path, al); },
        al.max_file);
}

template <class Table, class Parse>
void Database::check(Source<Table>& src, Parse parse, size_t max_size) {
    auto report = [&](const std::string& message) {
        if (message == src.last_error) return;
        src.last_error = message;
        if (src.ready)
            log::error(message, "; keeping the previous ", src.table.size(), " entries");
        else
            log::error(message, "; answering \"try again later\" until it is fixed");
    };

    auto stamp = auth::stamp_of(src.path);
    if (!stamp) return report(stamp.error().message);
    if (!stamp->exists) {
        if (!src.missing_logged) {
            if (src.loaded.exists)
                log::info(src.what, " ", src.path, " removed: dropping its ", src.table.size(),
                          " entries");
            else
                log::info(src.what, " ", src.path, " does not exist: no entries");
            src.missing_logged = true;
        }
        src.table = Table{};
        src.loaded = {};
        src.failed = {};
        src.ready = true;
        src.last_error.clear();
        return;
    }
    src.missing_logged = false;
    if (src.loaded.exists && *stamp == src.loaded) return;
    if (src.failed.exists && *stamp == src.failed) return;

    auto file = auth::read_text_file(src.path, max_size);
    if (!file) {
        // A file replaced between stat() and open() is simply looked at again.
        if (file.error().sys_errno == ENOENT) return;
        src.failed = *stamp;
        return report(file.error().message);
    }
    auto parsed = parse(file->text);
    if (!parsed) {
        src.failed = file->stamp;
        return report(parsed.error().to_string());
    }
    bool first = !src.ready;
    src.table = std::move(parsed).value();
    src.loaded = file->stamp;
    src.failed = {};
    src.ready = true;
    src.last_error.clear();
    log::info(first ? "loaded " : "reloaded ", src.what, " ", src.path, ": ", src.table.size(),
              " entries");
}

}  // namespace pbx::authd
