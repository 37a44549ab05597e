#include "common/event/graceful_stop.hpp"

#include "common/log.hpp"

namespace pbx::event {

GracefulStop::GracefulStop(std::string what, std::function<size_t()> open)
    : what_(std::move(what)), open_(std::move(open)) {}

void GracefulStop::begin(event_base* base, const std::function<void()>& ask_to_finish) {
    if (stopping_) return;
    stopping_ = true;
    base_ = base;
    if (open_() == 0) {
        event_base_loopexit(base_, nullptr);
        return;
    }
    ask_to_finish();
    timer_.reset(evtimer_new(base_, timer_cb, this));
    if (!timer_ || evtimer_add(timer_.get(), &kGrace) != 0) event_base_loopexit(base_, nullptr);
}

void GracefulStop::removed() {
    if (stopping_ && open_() == 0) event_base_loopexit(base_, nullptr);
}

void GracefulStop::timer_cb(evutil_socket_t, short, void* self) noexcept {
    auto* s = static_cast<GracefulStop*>(self);
    // (The count as a string: GCC 12 sees a false -Wrestrict in the inlined
    // integer append here.)
    log::info("stopping with ", std::to_string(s->open_()), " ", s->what_, " still open");
    event_base_loopexit(s->base_, nullptr);
}

}  // namespace pbx::event
