#include "remote-delivery/resolver.hpp"

#include <arpa/inet.h>
#include <unbound.h>

#include "common/log.hpp"

namespace pbx::remote {

namespace {

constexpr int kTypeA = 1;
constexpr int kTypeMx = 15;
constexpr int kTypeAaaa = 28;
constexpr int kRcodeServfail = 2;
constexpr int kRcodeNxdomain = 3;

DnsStatus status_of(int err, const ub_result* r, std::string& error) {
    if (err != 0) {
        error = ub_strerror(err);
        return DnsStatus::TempFail;
    }
    if (!r) {
        error = "no result";
        return DnsStatus::TempFail;
    }
    if (r->nxdomain || r->rcode == kRcodeNxdomain) return DnsStatus::NxDomain;
    if (r->rcode != 0) {
        error =
            r->rcode == kRcodeServfail ? "SERVFAIL" : "DNS error code " + std::to_string(r->rcode);
        return DnsStatus::TempFail;
    }
    if (r->bogus) {
        error = "DNSSEC validation failed";
        return DnsStatus::TempFail;
    }
    return r->havedata ? DnsStatus::Ok : DnsStatus::NoData;
}

}  // namespace

struct UnboundResolver::Query {
    UnboundResolver* owner = nullptr;
    uint64_t id = 0;
    int async_id = 0;
    bool started = false;
    EventPtr timer;
    std::function<void(int, ub_result*)> done;
};

Result<std::unique_ptr<UnboundResolver>> UnboundResolver::create(const std::string& forwarder,
                                                                 std::chrono::seconds timeout) {
    std::unique_ptr<UnboundResolver> r(new UnboundResolver());
    r->timeout_ = timeout;
    r->ctx_ = ub_ctx_create();
    if (!r->ctx_) return fail("ub_ctx_create failed");
    int err = 0;
    // A resolver on the loopback (a local unbound, systemd-resolved's
    // 127.0.0.53) is fine, whether named here or in /etc/resolv.conf.
    (void)ub_ctx_set_option(r->ctx_, "do-not-query-localhost:", "no");
    if (!forwarder.empty()) {
        err = ub_ctx_set_fwd(r->ctx_, forwarder.c_str());
        if (err != 0)
            return fail("remote_resolver " + forwarder + ": " + std::string(ub_strerror(err)));
    } else {
        err = ub_ctx_resolvconf(r->ctx_, nullptr);
        if (err != 0)
            log::warn("cannot read /etc/resolv.conf (", ub_strerror(err),
                      "); resolving from the root servers");
    }
    // Threads, not a forked process; started by the first query, after the drop.
    err = ub_ctx_async(r->ctx_, 1);
    if (err != 0) return fail(std::string("ub_ctx_async: ") + ub_strerror(err));
    return r;
}

UnboundResolver::~UnboundResolver() {
    queries_.clear();
    ev_.reset();
    if (ctx_) ub_ctx_delete(ctx_);  // outstanding queries die with it; then their slots
    slots_.clear();
}

Status UnboundResolver::attach(event_base* base) {
    base_ = base;
    int fd = ub_fd(ctx_);
    if (fd < 0) return fail("ub_fd failed");
    ev_.reset(event_new(base, fd, EV_READ | EV_PERSIST, on_readable, this));
    if (!ev_ || event_add(ev_.get(), nullptr) != 0) return fail("cannot watch the resolver");
    return {};
}

void UnboundResolver::on_readable(evutil_socket_t, short, void* self) noexcept {
    auto* r = static_cast<UnboundResolver*>(self);
    int err = ub_process(r->ctx_);
    if (err != 0) log::warn("resolver: ", ub_strerror(err));
}

// libunbound calls this from ub_process() with the query's id as the argument.
void UnboundResolver::on_result(void* arg, int err, ub_result* result) noexcept {
    auto* slot = static_cast<Slot*>(arg);
    UnboundResolver* self = slot->owner;
    uint64_t id = slot->id;
    self->slots_.erase(id);  // frees *slot
    self->complete(id, err, result);
    if (result) ub_resolve_free(result);
}

void UnboundResolver::complete(uint64_t id, int err, ub_result* result) {
    auto it = queries_.find(id);
    if (it == queries_.end()) return;  // timed out meanwhile
    std::unique_ptr<Query> owned = std::move(it->second);
    queries_.erase(it);
    auto done = std::move(owned->done);
    owned.reset();
    done(err, result);
}

void UnboundResolver::on_timeout(evutil_socket_t, short, void* arg) noexcept {
    auto* q = static_cast<Query*>(arg);
    UnboundResolver* self = q->owner;
    uint64_t id = q->id;
    // The query stays known to libunbound: its late answer comes back to
    // on_result with this id and finds nothing (and frees its slot).
    self->complete(id, UB_NOERROR, nullptr);  // status_of: "no result" → TempFail
}

void UnboundResolver::start(const std::string& name, int type,
                            std::function<void(int, ub_result*)> done) {
    auto q = std::make_unique<Query>();
    Query* raw = q.get();
    q->owner = this;
    q->id = next_id_++;
    q->done = std::move(done);
    // A deadline, and the channel for "answer from the loop" when the query
    // cannot even start.
    q->timer.reset(evtimer_new(base_, on_timeout, raw));
    queries_[q->id] = std::move(q);
    auto slot = std::make_unique<Slot>(Slot{this, raw->id});
    Slot* slot_raw = slot.get();
    slots_[raw->id] = std::move(slot);
    int err = ub_resolve_async(ctx_, name.c_str(), type, 1, slot_raw, on_result, &raw->async_id);
    timeval tv{};
    if (err != 0) {
        slots_.erase(raw->id);
        log::warn("resolver: cannot ask for ", name, ": ", ub_strerror(err));
    } else {
        raw->started = true;
        tv.tv_sec = static_cast<time_t>(timeout_.count());
    }
    if (raw->timer) evtimer_add(raw->timer.get(), &tv);
}

void UnboundResolver::lookup_mx(const std::string& domain, MxFn done) {
    start(domain, kTypeMx, [done = std::move(done), domain](int err, ub_result* r) {
        MxAnswer a;
        a.status = status_of(err, r, a.error);
        if (a.status == DnsStatus::Ok) {
            for (int i = 0; r->data[i]; ++i) {
                auto mx =
                    parse_mx_rdata(std::string_view(r->data[i], static_cast<size_t>(r->len[i])));
                if (mx)
                    a.records.push_back(std::move(*mx));
                else
                    log::warn("resolver: malformed MX record for ", domain, " ignored");
            }
            if (a.records.empty()) {
                a.status = DnsStatus::TempFail;
                a.error = "only malformed MX records";
            }
        }
        done(std::move(a));
    });
}

void UnboundResolver::lookup_addresses(const std::string& host, AddressFn done) {
    // Both queries at once; the answer when both are in.
    struct Both {
        AddressAnswer v6, v4;
        int pending = 2;
        AddressFn done;
    };
    auto both = std::make_shared<Both>();
    both->done = std::move(done);
    auto finish = [both]() {
        if (--both->pending > 0) return;
        AddressAnswer a;
        a.addresses = both->v6.addresses;
        a.addresses.insert(a.addresses.end(), both->v4.addresses.begin(), both->v4.addresses.end());
        if (!a.addresses.empty())
            a.status = DnsStatus::Ok;
        else if (both->v4.status == DnsStatus::TempFail || both->v6.status == DnsStatus::TempFail) {
            a.status = DnsStatus::TempFail;
            a.error = both->v4.status == DnsStatus::TempFail ? both->v4.error : both->v6.error;
        } else if (both->v4.status == DnsStatus::NxDomain)
            a.status = DnsStatus::NxDomain;
        else
            a.status = DnsStatus::NoData;
        auto cb = std::move(both->done);
        cb(std::move(a));
    };
    auto collect = [](AddressAnswer& out, int family, int err, ub_result* r) {
        out.status = status_of(err, r, out.error);
        if (out.status != DnsStatus::Ok) return;
        size_t want = family == AF_INET ? 4 : 16;
        for (int i = 0; r->data[i]; ++i) {
            if (static_cast<size_t>(r->len[i]) != want) continue;
            char buf[INET6_ADDRSTRLEN] = {};
            if (inet_ntop(family, r->data[i], buf, sizeof buf)) out.addresses.emplace_back(buf);
        }
        if (out.addresses.empty()) out.status = DnsStatus::NoData;
    };
    start(host, kTypeAaaa, [both, finish, collect](int err, ub_result* r) {
        collect(both->v6, AF_INET6, err, r);
        finish();
    });
    start(host, kTypeA, [both, finish, collect](int err, ub_result* r) {
        collect(both->v4, AF_INET, err, r);
        finish();
    });
}

}  // namespace pbx::remote
