// Webhook delivery: the notifier's one use of the webhook client (notify/webhook.h).
#include <boost/asio/post.hpp>

#include "notify/notifier.h"
#include "notify/webhook.h"

namespace taskhub::notify {

void Notifier::postWebhook(const store::NotificationRecord& rec, const Facts& facts,
                           std::function<void(bool, bool, std::string)> done) {
    std::string err;
    if (webhook_ == nullptr) {
        err = "webhook delivery is not set up in this daemon";
    } else if (webhook_->post(rec.destination, factsJson(facts),
                              {{"X-TaskHub-Event", model::nameString(rec.event)},
                               {"X-TaskHub-Notification-Id", rec.id}},
                              [done](PostResult r) { done(r.ok, r.retryable, r.error); }, &err)) {
        return;
    }
    // Refused before sending (a full queue is worth retrying; a URL the client refuses is not).
    const bool retryable = webhook_ != nullptr && webhook_->queued() > 0;
    boost::asio::post(io_, [done = std::move(done), err, retryable] { done(false, retryable, err); });
}

} // namespace taskhub::notify
