#include "queue-manager/delivery.hpp"

#include <algorithm>

#include "common/ipc/channel.hpp"
#include "queue-manager/submission.hpp"

namespace pbx::qm {

std::string_view to_string(Route r) {
    return r == Route::Local ? "local" : "remote";
}

Route route_of(std::string_view address, const std::vector<std::string>& local_domains) {
    std::string domain = domain_of(address);
    if (domain.empty()) return Route::Local;
    for (const std::string& d : local_domains) {
        std::string l = d;
        std::transform(l.begin(), l.end(), l.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (l == domain) return Route::Local;
    }
    return Route::Remote;
}

void SocketAgents::deliver(DeliveryRequest request, DoneFn done) {
    ipc::Channel ch = request.route == Route::Local ? ipc::Channel::Local : ipc::Channel::Remote;
    const ipc::ChannelSpec& spec = ipc::channel_spec(ch);
    DeliveryReport report;
    report.unavailable = true;
    auto fd = ipc::connect_unix(ipc::socket_path(runtime_dir_, ch));
    if (!fd)
        report.reason = std::string(spec.server_program) + " is not running";
    else
        report.reason = std::string(spec.server_program) +
                        " is running but its delivery protocol is not implemented yet";
    done(std::move(report));
}

}  // namespace pbx::qm
