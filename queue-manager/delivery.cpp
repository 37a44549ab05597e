#include "queue-manager/delivery.hpp"

#include <algorithm>

#include "common/ipc/delivery_msgs.hpp"
#include "common/log.hpp"
#include "queue-manager/submission.hpp"

namespace pbx::qm {

namespace dm = ipc::delivery;

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

SocketAgents::SocketAgents(event_base* base, std::string runtime_dir, Limits limits)
    : base_(base), runtime_dir_(std::move(runtime_dir)), limits_(limits) {}

SocketAgents::~SocketAgents() = default;

size_t SocketAgents::in_flight() const {
    return local_.in_flight.size() + remote_.in_flight.size();
}

std::string SocketAgents::name(const Agent& a) const {
    ipc::Channel ch = a.route == Route::Local ? ipc::Channel::Local : ipc::Channel::Remote;
    return std::string(ipc::channel_spec(ch).server_program);
}

std::optional<std::string> SocketAgents::connect(Agent& a) {
    if (a.conn && a.conn->is_open()) return std::nullopt;
    a.conn.reset();
    ipc::Channel ch = a.route == Route::Local ? ipc::Channel::Local : ipc::Channel::Remote;
    auto fd = ipc::connect_unix(ipc::socket_path(runtime_dir_, ch));
    if (!fd) return name(a) + " is not running (" + fd.error().message + ")";
    a.conn = std::make_unique<ipc::Connection>(
        base_, std::move(fd).value(), dm::kProtocol,
        [this, &a](ipc::Message&& m) { on_message(a, std::move(m)); },
        [this, &a](const ipc::IpcError& e) { on_close(a, e); });
    log::debug("connected to ", name(a));
    return std::nullopt;
}

void SocketAgents::deliver(DeliveryRequest request, DoneFn done) {
    Agent& a = agent(request.route);
    if (auto err = connect(a)) {
        done(DeliveryReport{true, *err, {}});
        return;
    }
    if (!a.waiting.empty() || a.in_flight.size() >= limits_.max_in_flight) {
        a.waiting.push_back(Waiting{std::move(request), std::move(done)});
        return;
    }
    send(a, std::move(request), std::move(done));
}

void SocketAgents::send(Agent& a, DeliveryRequest request, DoneFn done) {
    const spool::Envelope& env = request.envelope;
    uint64_t id = next_id_++;
    ipc::Message m = ipc::Message::named(dm::kProtocol, "deliver");
    m.set_u64("id", id);
    m.set_str("queue_id", env.id.str());
    m.set_str("sender", env.sender);
    m.add_fd("message", std::move(request.message));
    m.set_u64("size", env.size);
    m.set_u64("arrival", static_cast<uint64_t>(env.arrival.time_since_epoch().count()));
    m.set_str("body", env.body == spool::BodyType::SevenBit ? "7BIT" : "8BITMIME");
    if (env.smtputf8) m.set_u64("smtputf8", 1);
    if (!env.envid.empty()) m.set_str("envid", env.envid);
    if (env.ret != spool::DsnRet::Unspecified)
        m.set_str("ret", env.ret == spool::DsnRet::Full ? "FULL" : "HDRS");
    for (size_t i : request.recipients) {
        const spool::Recipient& r = env.recipients[i];
        m.set_str("rcpt", r.address);
        m.set_str("rcpt_orcpt", r.orcpt);
        m.set_u64("rcpt_notify", r.notify);
    }
    if (auto s = a.conn->send(std::move(m)); !s) {
        done(DeliveryReport{true, "cannot send to " + name(a) + ": " + s.error().message, {}});
        return;
    }
    Pending p;
    p.recipients = std::move(request.recipients);
    p.answered.assign(p.recipients.size(), false);
    p.done = std::move(done);
    a.in_flight.emplace(id, std::move(p));
}

void SocketAgents::pump(Agent& a) {
    while (!a.waiting.empty() && a.in_flight.size() < limits_.max_in_flight) {
        if (auto err = connect(a)) return fail_waiting(a, *err);
        Waiting w = std::move(a.waiting.front());
        a.waiting.pop_front();
        send(a, std::move(w.request), std::move(w.done));
    }
}

void SocketAgents::fail_waiting(Agent& a, const std::string& reason) {
    std::deque<Waiting> waiting;
    waiting.swap(a.waiting);
    for (Waiting& w : waiting) w.done(DeliveryReport{true, reason, {}});
}

void SocketAgents::on_message(Agent& a, ipc::Message&& m) {
    uint64_t id = m.get_u64("id").value_or(0);
    auto it = a.in_flight.find(id);
    if (it == a.in_flight.end()) {
        log::warn(name(a), " answered request ", id, ", which is not in flight");
        return;
    }
    if (m.name() == "done") {
        finish(a, id, "4.4.2 " + name(a) + " gave no result for this recipient");
        pump(a);
        return;
    }
    if (m.name() != "rcpt_result") {
        log::warn(name(a), " sent an unexpected '", m.name(), "'");
        return;
    }
    Pending& p = it->second;
    uint64_t index = *m.get_u64("index");
    if (index >= p.recipients.size() || p.answered[index]) {
        log::warn(name(a), " sent a result for recipient ", index, " of request ", id,
                  ", which it may not");
        return;
    }
    p.answered[index] = true;
    std::string_view status = *m.get_str("status");
    RecipientResult r;
    r.index = p.recipients[index];
    r.outcome = status == "sent"     ? Outcome::Delivered
                : status == "failed" ? Outcome::Failed
                                     : Outcome::Deferred;
    r.reply = std::string(*m.get_str("reply"));
    r.relay = std::string(m.get_str("remote").value_or(to_string(a.route)));
    r.tls = std::string(m.get_str("tls").value_or(""));
    p.results.push_back(std::move(r));
}

void SocketAgents::finish(Agent& a, uint64_t id, std::string_view missing_reply) {
    auto it = a.in_flight.find(id);
    if (it == a.in_flight.end()) return;
    Pending p = std::move(it->second);
    a.in_flight.erase(it);
    DeliveryReport report;
    report.results = std::move(p.results);
    for (size_t i = 0; i < p.recipients.size(); ++i)
        if (!p.answered[i])
            report.results.push_back(RecipientResult{p.recipients[i], Outcome::Deferred,
                                                     std::string(missing_reply), "", ""});
    p.done(std::move(report));
}

void SocketAgents::on_close(Agent& a, const ipc::IpcError& e) {
    log::warn("connection to ", name(a), " lost: ", e.text);
    std::vector<uint64_t> ids;
    for (const auto& [id, p] : a.in_flight) ids.push_back(id);
    std::string reply = "4.4.2 connection to " + name(a) + " lost";
    for (uint64_t id : ids) finish(a, id, reply);
    a.conn.reset();  // allowed from the Connection's own callback
    pump(a);
}

}  // namespace pbx::qm
