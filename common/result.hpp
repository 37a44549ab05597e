// Result<T, E>: the return type of everything that can fail (C++20 has no
// std::expected). Predicates return bool; fallible operations return Result so
// that ignoring a failure is a compile-time warning ([[nodiscard]]).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace pbx {

template <class E>
struct Err {
    E error;
};
template <class E>
Err(E) -> Err<E>;

// An error that carries a human-readable reason; the common case.
struct Error {
    std::string message;
    int sys_errno = 0;  // 0 when the error is not a failed syscall

    static Error from_errno(std::string_view what, int e = errno) {
        return Error{std::string(what) + ": " + std::strerror(e), e};
    }
};

inline Err<Error> fail(std::string message) {
    return Err<Error>{Error{std::move(message), 0}};
}
inline Err<Error> fail_errno(std::string_view what, int e = errno) {
    return Err<Error>{Error::from_errno(what, e)};
}

struct Unit {};

template <class T, class E = Error>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    template <class E2>
    Result(Err<E2> err) : v_(std::in_place_index<1>, E(std::move(err.error))) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    const E& error() const { return std::get<1>(v_); }
    E& error() { return std::get<1>(v_); }

  private:
    std::variant<T, E> v_;
};

// Result<void>: success carries no value.
template <class E>
class [[nodiscard]] Result<void, E> {
  public:
    Result() = default;
    template <class E2>
    Result(Err<E2> err) : err_(E(std::move(err.error))), failed_(true) {}

    bool ok() const { return !failed_; }
    explicit operator bool() const { return ok(); }
    const E& error() const { return err_; }
    E& error() { return err_; }

  private:
    E err_{};
    bool failed_ = false;
};

using Status = Result<void, Error>;

}  // namespace pbx
