// authd's setup: what happens before and after the privilege drop.
#pragma once

#include <memory>
#include <optional>

#include "authd/database.hpp"
#include "authd/handler.hpp"
#include "authd/server.hpp"
#include "common/auth/system_users.hpp"
#include "common/ipc/peers.hpp"
#include "common/privsep/service.hpp"

namespace pbx::authd {

class Authd {
  public:
    // As root: the peer table (getpwnam of the pbx-* users, before the drop).
    Status pre_drop(ServiceContext& ctx);
    // As pbx-auth: load the files, make the dummy hash, listen.
    Status post_drop(ServiceContext& ctx);

  private:
    std::optional<ipc::PeerTable> peers_;
    std::unique_ptr<auth::SystemUsers> system_;
    std::unique_ptr<Database> db_;
    std::unique_ptr<Handler> handler_;
    std::unique_ptr<Server> server_;
};

}  // namespace pbx::authd
