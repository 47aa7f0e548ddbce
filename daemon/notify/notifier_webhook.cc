// Webhook delivery: the notifier's one use of the webhook client (notify/webhook.h).
#include "notify/notifier.h"

#include <boost/asio/post.hpp>

namespace taskhub::notify {

void Notifier::postWebhook(const store::NotificationRecord& rec, const Facts& facts,
                           std::function<void(bool, std::string)> done) {
    (void)rec;
    (void)facts;
    boost::asio::post(io_, [done = std::move(done)] { done(false, "webhook delivery is not built in yet"); });
}

} // namespace taskhub::notify
