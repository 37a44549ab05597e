#include "master/listeners.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "common/master_interface.hpp"

namespace pbx::master {
namespace {

std::string format_endpoint(const config::Endpoint& ep) {
    if (ep.host.find(':') != std::string::npos)
        return "[" + ep.host + "]:" + std::to_string(ep.port);
    return ep.host + ":" + std::to_string(ep.port);
}

Result<UniqueFd> bind_one(const config::Endpoint& ep, int backlog) {
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    std::string host = ep.host == "*" ? "0.0.0.0" : ep.host;
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(ep.port);
        len = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(ep.port);
        len = sizeof(sockaddr_in6);
    } else {
        return fail("listener address must be a numeric IP address: '" + ep.host + "'");
    }
    UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("socket");
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
        return fail_errno("bind " + format_endpoint(ep));
    if (listen(fd.get(), backlog) != 0) return fail_errno("listen " + format_endpoint(ep));
    return fd;
}

}  // namespace

std::string listener_key(const std::string& kind, const std::string& endpoint) {
    return kind + " " + endpoint;
}

Result<std::vector<BoundListener>> bind_listeners(const config::Config& cfg,
                                                  std::map<std::string, UniqueFd>& keep) {
    std::vector<BoundListener> out;
    int backlog = static_cast<int>(cfg.integer("listen_backlog"));
    for (const auto& kind : master_interface::kListenerKinds) {
        for (const auto& ep : cfg.endpoints(kind.config_key)) {
            BoundListener l;
            l.kind = std::string(kind.name);
            l.endpoint = format_endpoint(ep);
            auto key = listener_key(l.kind, l.endpoint);
            if (auto it = keep.find(key); it != keep.end()) {
                l.fd = std::move(it->second);
                keep.erase(it);
            } else {
                auto fd = bind_one(ep, backlog);
                if (!fd)
                    return Err{Error{std::string(kind.config_key) + ": " + fd.error().message}};
                l.fd = std::move(fd).value();
            }
            out.push_back(std::move(l));
        }
    }
    return out;
}

}  // namespace pbx::master
