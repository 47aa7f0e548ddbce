// The service manager's readiness protocol (sd_notify), without libsystemd: one datagram to the
// socket named by $NOTIFY_SOCKET. Written here because libsystemd, used for nothing else, costs
// the daemon about 1 MB of resident memory (it pulls in libgcrypt, zstd, lz4, lzma, libcap).
#ifndef TASKHUB_COMMON_NOTIFY_H
#define TASKHUB_COMMON_NOTIFY_H

namespace taskhub {

// Sends state (e.g. "READY=1", "RELOADING=1", "STOPPING=1") to $NOTIFY_SOCKET, a path or an
// abstract name starting with '@'. Returns false when the variable is unset (not run by a service
// manager) or the message could not be sent; callers carry on either way.
bool notifyServiceManager(const char* state);

} // namespace taskhub

#endif // TASKHUB_COMMON_NOTIFY_H
