#include "metrics/registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace taskhub::metrics {

std::string_view typeName(Type type) {
    switch (type) {
    case Type::Counter: return "counter";
    case Type::Gauge: return "gauge";
    case Type::Histogram: return "histogram";
    case Type::StateSet: return "stateset";
    case Type::Info: return "info";
    case Type::Unknown: return "unknown";
    }
    return "unknown";
}

namespace {

bool nameChar(char c, bool first, bool colon) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
    if (colon && c == ':') return true;
    return !first && c >= '0' && c <= '9';
}

bool validName(std::string_view name, bool colon) {
    if (name.empty()) return false;
    for (size_t i = 0; i < name.size(); ++i) {
        if (!nameChar(name[i], i == 0, colon)) return false;
    }
    return true;
}

// The length of the valid UTF-8 sequence at s[i], or 0 when none starts there.
size_t utf8Length(std::string_view s, size_t i) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char c = b(0);
    if (c < 0x80) return 1;
    size_t n = 0;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3;
    else if (c >= 0xF0 && c <= 0xF4) n = 4;
    else return 0;
    if (i + n > s.size()) return 0;
    for (size_t k = 1; k < n; ++k) {
        if ((b(k) & 0xC0) != 0x80) return 0;
    }
    // Overlong forms, UTF-16 surrogates and code points above U+10FFFF.
    if (c == 0xE0 && b(1) < 0xA0) return 0;
    if (c == 0xED && b(1) >= 0xA0) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;
    if (c == 0xF4 && b(1) >= 0x90) return 0;
    return n;
}

} // namespace

bool validMetricName(std::string_view name) { return validName(name, true); }
bool validLabelName(std::string_view name) { return validName(name, false); }

void appendEscapedLabelValue(std::string* out, std::string_view value) {
    size_t i = 0;
    while (i < value.size()) {
        const char c = value[i];
        if (c == '\\') {
            out->append("\\\\");
            ++i;
        } else if (c == '"') {
            out->append("\\\"");
            ++i;
        } else if (c == '\n') {
            out->append("\\n");
            ++i;
        } else if (const size_t n = utf8Length(value, i); n > 0) {
            out->append(value.substr(i, n));
            i += n;
        } else {
            out->append("\xEF\xBF\xBD"); // U+FFFD for one byte that starts no valid sequence
            ++i;
        }
    }
}

void appendValue(std::string* out, double value) {
    if (std::isnan(value)) {
        out->append("NaN");
        return;
    }
    if (std::isinf(value)) {
        out->append(value > 0 ? "+Inf" : "-Inf");
        return;
    }
    char buf[32];
    std::to_chars_result r;
    if (value == std::trunc(value) && std::fabs(value) < 9.007199254740992e15) {
        r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(value));
    } else {
        r = std::to_chars(buf, buf + sizeof buf, value);
    }
    out->append(buf, r.ptr);
}

std::string labelText(const std::vector<std::string>& names, const std::vector<std::string>& values) {
    std::string out;
    for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
        if (i > 0) out.push_back(',');
        out.append(names[i]).append("=\"");
        appendEscapedLabelValue(&out, values[i]);
        out.push_back('"');
    }
    return out;
}

// ---- Writer ----

void Writer::sampleEscaped(std::string_view name, std::string_view labels, std::string_view last_label,
                           std::string_view last_value, double value) {
    out_->append(name);
    if (!labels.empty() || !last_label.empty()) {
        out_->push_back('{');
        out_->append(labels);
        if (!last_label.empty()) {
            if (!labels.empty()) out_->push_back(',');
            out_->append(last_label).append("=\"").append(last_value).push_back('"');
        }
        out_->push_back('}');
    }
    out_->push_back(' ');
    appendValue(out_, value);
    out_->push_back('\n');
}

void Writer::family(std::string_view name, Type type, std::string_view help, std::string_view unit) {
    out_->append("# TYPE ").append(name).append(" ").append(typeName(type)).append("\n");
    if (!unit.empty()) out_->append("# UNIT ").append(name).append(" ").append(unit).append("\n");
    if (!help.empty()) {
        out_->append("# HELP ").append(name).append(" ");
        appendEscapedLabelValue(out_, help);
        out_->append("\n");
    }
}

void Writer::sample(std::string_view name,
                    std::initializer_list<std::pair<std::string_view, std::string_view>> labels, double value) {
    out_->append(name);
    if (labels.size() > 0) {
        out_->push_back('{');
        bool first = true;
        for (const auto& [k, v] : labels) {
            if (!first) out_->push_back(',');
            first = false;
            out_->append(k).append("=\"");
            appendEscapedLabelValue(out_, v);
            out_->push_back('"');
        }
        out_->push_back('}');
    }
    out_->push_back(' ');
    appendValue(out_, value);
    out_->push_back('\n');
}

// ---- families ----

Family::Family(std::string name, Type type, std::string help, std::string unit, std::vector<std::string> label_names)
    : name_(std::move(name)), type_(type), help_(std::move(help)), unit_(std::move(unit)),
      label_names_(std::move(label_names)) {}

void Family::checkArity(const LabelValues& values) const {
    if (values.size() != label_names_.size()) {
        throw std::invalid_argument("metric " + name_ + " has " + std::to_string(label_names_.size()) +
                                    " label(s), given " + std::to_string(values.size()) + " value(s)");
    }
}

double& ScalarFamily::at(const LabelValues& values) {
    if (auto it = series_.find(values); it != series_.end()) return it->second.value;
    checkArity(values);
    return series_.insert(values, Series{0.0, labelText(label_names_, values)})->second.value;
}

const double* ScalarFamily::find(const LabelValues& values) const {
    auto it = series_.find(values);
    return it == series_.end() ? nullptr : &it->second.value;
}

void ScalarFamily::retainSeries(const std::function<bool(const LabelValues&)>& keep) {
    series_.eraseIf([&](const auto& kv) { return !keep(kv.first); });
}

void ScalarFamily::render(Writer& w) const {
    w.family(name_, type_, help_, unit_);
    const std::string sample = type_ == Type::Counter ? name_ + "_total" : name_;
    for (const auto& [values, s] : series_) w.sampleEscaped(sample, s.labels, {}, {}, s.value);
}

HistogramFamily::HistogramFamily(std::string name, std::string help, std::string unit,
                                 std::vector<std::string> label_names, std::vector<double> bounds)
    : Family(std::move(name), Type::Histogram, std::move(help), std::move(unit), std::move(label_names)),
      bounds_(std::move(bounds)) {
    for (size_t i = 0; i < bounds_.size(); ++i) {
        if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
            throw std::invalid_argument("histogram " + name_ + ": bucket bounds must be finite and increasing");
        }
        // OpenMetrics wants canonical numbers in le: "1.0", not "1".
        std::string le;
        appendValue(&le, bounds_[i]);
        if (le.find_first_of(".e") == std::string::npos) le += ".0";
        le_.push_back(std::move(le));
    }
    le_.push_back("+Inf");
}

void HistogramFamily::observe(const LabelValues& values, double v) {
    auto it = series_.find(values);
    if (it == series_.end()) {
        checkArity(values);
        it = series_.insert(values, HistogramSeries{std::vector<uint64_t>(bounds_.size() + 1, 0), 0, 0,
                                                    labelText(label_names_, values)});
    }
    auto& s = it->second;
    const size_t b = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
    ++s.buckets[b];
    s.sum += v;
    ++s.count;
}

const HistogramSeries* HistogramFamily::find(const LabelValues& values) const {
    auto it = series_.find(values);
    return it == series_.end() ? nullptr : &it->second;
}

void HistogramFamily::retainSeries(const std::function<bool(const LabelValues&)>& keep) {
    series_.eraseIf([&](const auto& kv) { return !keep(kv.first); });
}

void HistogramFamily::render(Writer& w) const {
    w.family(name_, type_, help_, unit_);
    const std::string bucket = name_ + "_bucket", sum = name_ + "_sum", count = name_ + "_count";
    for (const auto& [values, s] : series_) {
        uint64_t cumulative = 0;
        for (size_t i = 0; i < s.buckets.size(); ++i) {
            cumulative += s.buckets[i];
            w.sampleEscaped(bucket, s.labels, "le", le_[i], static_cast<double>(cumulative));
        }
        w.sampleEscaped(sum, s.labels, {}, {}, s.sum);
        w.sampleEscaped(count, s.labels, {}, {}, static_cast<double>(s.count));
    }
}

// ---- Registry ----

void Registry::claim(const std::string& name, Type type, const std::vector<std::string>& label_names,
                     const std::string& unit) {
    if (!validMetricName(name)) throw std::invalid_argument("invalid metric name '" + name + "'");
    // OpenMetrics: a family with a unit has it as the last part of its name.
    if (!unit.empty() && (name.size() <= unit.size() + 1 || name.compare(name.size() - unit.size() - 1,
                                                                         std::string::npos, "_" + unit) != 0)) {
        throw std::invalid_argument("metric " + name + " must end in _" + unit);
    }
    for (const auto& f : families_) {
        if (f->name() == name) throw std::invalid_argument("metric " + name + " is registered twice");
    }
    for (const auto& l : label_names) {
        if (!validLabelName(l) || (type == Type::Histogram && l == "le")) {
            throw std::invalid_argument("metric " + name + ": invalid label name '" + l + "'");
        }
    }
}

ScalarFamily& Registry::counter(std::string name, std::string help, std::vector<std::string> label_names) {
    claim(name, Type::Counter, label_names, {});
    auto f = std::make_unique<ScalarFamily>(std::move(name), Type::Counter, std::move(help), std::string{},
                                            std::move(label_names));
    auto& ref = *f;
    families_.push_back(std::move(f));
    return ref;
}

ScalarFamily& Registry::gauge(std::string name, std::string help, std::vector<std::string> label_names,
                              std::string unit) {
    claim(name, Type::Gauge, label_names, unit);
    auto f = std::make_unique<ScalarFamily>(std::move(name), Type::Gauge, std::move(help), std::move(unit),
                                            std::move(label_names));
    auto& ref = *f;
    families_.push_back(std::move(f));
    return ref;
}

HistogramFamily& Registry::histogram(std::string name, std::string help, std::vector<std::string> label_names,
                                     std::vector<double> bounds, std::string unit) {
    claim(name, Type::Histogram, label_names, unit);
    auto f = std::make_unique<HistogramFamily>(std::move(name), std::move(help), std::move(unit),
                                               std::move(label_names), std::move(bounds));
    auto& ref = *f;
    families_.push_back(std::move(f));
    return ref;
}

void Registry::addCollector(std::function<void(Writer&)> collector) { collectors_.push_back(std::move(collector)); }

void Registry::retainLabelValues(std::string_view label, const std::function<bool(std::string_view)>& keep) {
    for (auto& f : families_) {
        const auto& names = f->labelNames();
        const auto it = std::find(names.begin(), names.end(), label);
        if (it == names.end()) continue;
        const size_t i = static_cast<size_t>(it - names.begin());
        f->retainSeries([&](const LabelValues& values) { return keep(values[i]); });
    }
}

void Registry::renderInto(Writer& w) const {
    for (const auto& f : families_) f->render(w);
    for (const auto& c : collectors_) c(w);
}

std::string Registry::render() const {
    std::string out;
    out.reserve(last_size_ + last_size_ / 8);
    Writer w(&out);
    renderInto(w);
    w.finish();
    last_size_ = out.size();
    return out;
}

} // namespace taskhub::metrics
