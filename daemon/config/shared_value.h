// Shared<T>: an immutable value held by reference count in one pointer, for the members of a
// task that most tasks leave empty or share with others (its plugin's name, env, limits, ...).
// A workflow of 100,000 tasks pays 8 bytes per such member instead of the value's own size, and
// tasks that share a value (interned through a SharedPool) hold one copy of it. An empty handle
// reads as an empty T. Copies share the value; they may be read from any thread.
#ifndef TASKHUB_CONFIG_SHARED_VALUE_H
#define TASKHUB_CONFIG_SHARED_VALUE_H

#include <atomic>
#include <concepts>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace taskhub::config {

template <class T>
class Shared {
public:
    Shared() = default;
    // Holds value; an empty one (value.empty()) is held as no value at all.
    explicit Shared(T value) : box_(value.empty() ? nullptr : new Box{std::move(value)}) {}
    Shared(const Shared& other) noexcept : box_(other.box_) {
        if (box_) box_->refs.fetch_add(1, std::memory_order_relaxed);
    }
    Shared(Shared&& other) noexcept : box_(std::exchange(other.box_, nullptr)) {}
    Shared& operator=(Shared other) noexcept {
        std::swap(box_, other.box_);
        return *this;
    }
    Shared& operator=(T value) { return *this = Shared(std::move(value)); }
    ~Shared() {
        if (box_ && box_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete box_;
    }

    const T& get() const noexcept { return box_ ? box_->value : emptyValue(); }
    operator const T&() const noexcept { return get(); }
    const T* operator->() const noexcept { return &get(); }
    bool empty() const noexcept { return box_ == nullptr; }
    // A container reads as one: size(), and begin() and end() for range for.
    auto size() const noexcept
        requires requires(const T& v) { v.size(); }
    {
        return get().size();
    }
    auto begin() const noexcept
        requires requires(const T& v) { v.begin(); }
    {
        return get().begin();
    }
    auto end() const noexcept
        requires requires(const T& v) { v.end(); }
    {
        return get().end();
    }

    // Text reads as text wherever a std::string_view is taken.
    operator std::string_view() const noexcept
        requires std::same_as<T, std::string>
    {
        return get();
    }

    friend bool operator==(const Shared& a, const Shared& b) { return a.box_ == b.box_ || a.get() == b.get(); }
    // (Text compares with a std::string_view: see below.)
    friend bool operator==(const Shared& a, const T& b)
        requires(!std::same_as<T, std::string>)
    {
        return a.get() == b;
    }

private:
    struct Box {
        explicit Box(T v) : value(std::move(v)) {}
        std::atomic<uint32_t> refs{1};
        const T value;
    };
    static const T& emptyValue() noexcept {
        static const T empty{};
        return empty;
    }
    Box* box_ = nullptr;
};

using SharedText = Shared<std::string>;

// Comparisons and concatenation of shared text with text, as with a std::string.
inline bool operator==(const SharedText& a, std::string_view b) { return a.get() == b; }
inline std::string operator+(const SharedText& a, std::string_view b) { return std::string(a.get()).append(b); }
inline std::string operator+(std::string a, const SharedText& b) { return a.append(b.get()); }
inline std::string operator+(const char* a, const SharedText& b) { return std::string(a).append(b.get()); }

// Hands out one Shared per distinct value, so that equal values are held once: the plugin names
// and accounts of a file's tasks. Lives as long as one load; what it handed out lives on.
template <class T>
class SharedPool {
public:
    Shared<T> get(const T& value) {
        auto it = values_.find(value);
        if (it == values_.end()) it = values_.emplace(value, Shared<T>(value)).first;
        return it->second;
    }

private:
    std::map<T, Shared<T>, std::less<>> values_;
};

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_SHARED_VALUE_H
