// The control channel (control/control.sock): `pillarbox` talks to the master.
// Root may run every command; any other local user only `status`.
#pragma once

#include "common/ipc/frame.hpp"

namespace pbx::ipc::control {

inline constexpr FieldSpec kRequestFields[] = {
    {"command", Kind::Str, kRequired},  // status | stop | reload
    {"json", Kind::U64, kOptional},     // 1: reply text is JSON
};
inline constexpr FieldSpec kReplyFields[] = {
    {"ok", Kind::U64, kRequired},  // 1 success, 0 refused or failed
    {"text", Kind::Str, kRequired},
};
inline constexpr MessageSpec kMessages[] = {
    {1, "request", kRequestFields},
    {2, "reply", kReplyFields},
};
inline constexpr Protocol kProtocol{"control", 1, kMessages, 1 << 20};
static_assert(well_formed(kProtocol));

}  // namespace pbx::ipc::control
