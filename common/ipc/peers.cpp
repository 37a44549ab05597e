#include "common/ipc/peers.hpp"

#include <pwd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "common/log.hpp"

namespace pbx::ipc {
namespace {

constexpr ClientRule kControlClients[] = {{Program::AnyUser, Access::ReadOnly}};
constexpr ClientRule kEnqueueClients[] = {
    {Program::Smtpd, Access::Full},
    {Program::Submitd, Access::Full},
    {Program::AnyUser, Access::Full},  // sendmail as the invoking user
};
constexpr ClientRule kAuthClients[] = {
    {Program::Smtpd, Access::Full},
    {Program::Submitd, Access::Full},
    {Program::Login, Access::Full},
    {Program::QueueManager, Access::Full},
};
constexpr ClientRule kQueueManagerOnly[] = {{Program::QueueManager, Access::Full}};
constexpr ClientRule kSessionClients[] = {{Program::Login, Access::Full}};

constexpr ChannelSpec kChannels[] = {
    {Channel::Control, "control", kControlDir, kControlSocket, Program::Root, "pillarbox-master",
     kControlClients, true},
    {Channel::Enqueue, "enqueue", kQueueDir, kEnqueueSocket, Program::QueueManager, "queue-manager",
     kEnqueueClients, true},
    {Channel::Auth, "auth", kAuthDir, kAuthSocket, Program::Authd, "authd", kAuthClients, false},
    {Channel::Local, "local", kLocalDir, kLocalSocket, Program::Root, "local-delivery",
     kQueueManagerOnly, false},
    {Channel::Remote, "remote", kRemoteDir, kRemoteSocket, Program::RemoteDelivery,
     "remote-delivery", kQueueManagerOnly, false},
    {Channel::Session, "session", kSessionDir, kSessionSocket, Program::Root, "pillarbox-master",
     kSessionClients, false},
};

constexpr SystemUser kSystemUsers[] = {
    {Program::Smtpd, "pbx-smtpd"},        {Program::Submitd, "pbx-submit"},
    {Program::QueueManager, "pbx-queue"}, {Program::RemoteDelivery, "pbx-remote"},
    {Program::Authd, "pbx-auth"},         {Program::Login, "pbx-login"},
};

}  // namespace

std::string_view to_string(Program p) {
    switch (p) {
        case Program::Root:
            return "root";
        case Program::Smtpd:
            return "smtpd";
        case Program::Submitd:
            return "submitd";
        case Program::QueueManager:
            return "queue-manager";
        case Program::RemoteDelivery:
            return "remote-delivery";
        case Program::Authd:
            return "authd";
        case Program::Login:
            return "login";
        case Program::AnyUser:
            return "user";
    }
    return "?";
}

std::string_view to_string(Access a) {
    switch (a) {
        case Access::Denied:
            return "denied";
        case Access::ReadOnly:
            return "read-only";
        case Access::Full:
            return "full";
    }
    return "?";
}

std::span<const ChannelSpec> channels() {
    return kChannels;
}

const ChannelSpec& channel_spec(Channel c) {
    for (const ChannelSpec& s : kChannels)
        if (s.id == c) return s;
    log::error("ipc: no channel ", static_cast<int>(c));
    std::abort();
}

std::string socket_path(std::string_view runtime_dir, Channel c) {
    std::string_view rel = channel_spec(c).socket;
    if (runtime_dir.empty()) return std::string(rel);
    std::string out(runtime_dir);
    if (out.back() != '/') out += '/';
    out += rel;
    return out;
}

std::span<const SystemUser> system_users() {
    return kSystemUsers;
}

PeerTable::PeerTable(std::map<uid_t, Program> uids) : uids_(std::move(uids)) {}

Result<PeerTable> PeerTable::from_system(std::span<const SystemUser> users) {
    std::map<uid_t, Program> uids;
    std::map<uid_t, std::string_view> names;
    std::vector<char> buf(16384);
    for (const SystemUser& u : users) {
        passwd pw{};
        passwd* found = nullptr;
        std::string name(u.user);
        int rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
        if (rc != 0) return fail_errno("getpwnam " + name, rc);
        if (!found) {
            log::debug("ipc: no user ", name, ": ", to_string(u.program), " is refused everywhere");
            continue;
        }
        if (pw.pw_uid == 0)
            return fail("user " + name + " has uid 0; a pillarbox program must not run as root");
        auto [it, inserted] = uids.emplace(pw.pw_uid, u.program);
        if (!inserted && it->second != u.program)
            return fail(log::concat("users ", names[pw.pw_uid], " and ", name, " share uid ",
                                    pw.pw_uid, "; each program needs its own user"));
        names[pw.pw_uid] = u.user;
    }
    return PeerTable(std::move(uids));
}

Program PeerTable::program_of(uid_t uid) const {
    if (uid == 0) return Program::Root;
    auto it = uids_.find(uid);
    return it == uids_.end() ? Program::AnyUser : it->second;
}

Access PeerTable::access(Channel c, uid_t uid) const {
    const Program who = program_of(uid);
    if (who == Program::Root) return Access::Full;
    Access fallback = Access::Denied;
    for (const ClientRule& r : channel_spec(c).clients) {
        if (r.who == who) return r.access;
        if (r.who == Program::AnyUser) fallback = r.access;
    }
    return fallback;
}

}  // namespace pbx::ipc
