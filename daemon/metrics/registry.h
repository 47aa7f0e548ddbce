// A small metrics registry (counters, gauges, histograms with label sets) and the writer of the
// OpenMetrics text exposition format 1.0 (https://github.com/OpenObservability/OpenMetrics):
// `# TYPE`, `# UNIT`, `# HELP` per family, counters as `NAME_total`, histograms as
// `NAME_bucket{le="..."}` / `NAME_sum` / `NAME_count`, and a closing `# EOF`.
//
// Label values may come from less trusted parties (workflow names are file names, plugin names
// come from .so files): the writer escapes `\`, `"` and newline in them, and replaces bytes that
// are not valid UTF-8 with U+FFFD, so no value can end a label, a line or the exposition.
// Metric and label names are the program's own and are checked when a family is made
// (std::invalid_argument for a bad or reused name: a programming error, not an input error).
//
// Cardinality: a family holds one series per distinct label-value tuple it was asked for; the
// caller decides which values are allowed (daemon/metrics/metrics.h admits only loaded
// workflows and plugins) and removes series with retainSeries() / Registry::retainLabelValues()
// when a value goes away.
//
// Threading: none inside. The daemon uses a registry on the event-loop thread only.
#ifndef TASKHUB_METRICS_REGISTRY_H
#define TASKHUB_METRICS_REGISTRY_H

#include <cstdint>
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::metrics {

enum class Type { Counter, Gauge, Histogram, StateSet, Info, Unknown };

// The name OpenMetrics spells the type with in `# TYPE`: counter, gauge, histogram, ...
std::string_view typeName(Type type);

// True for a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) and label name ([a-zA-Z_][a-zA-Z0-9_]*).
bool validMetricName(std::string_view name);
bool validLabelName(std::string_view name);

// Appends `value` to *out escaped for a label value: `\` -> `\\`, `"` -> `\"`, newline -> `\n`,
// invalid UTF-8 -> U+FFFD.
void appendEscapedLabelValue(std::string* out, std::string_view value);

// `a="x",b="y"` for these label names and values, values escaped (appendEscapedLabelValue).
std::string labelText(const std::vector<std::string>& names, const std::vector<std::string>& values);

// Appends a sample value: integers without a fraction ("3"), others in the shortest form that
// reads back to the same double ("0.25"), "+Inf", "-Inf", "NaN".
void appendValue(std::string* out, double value);

// Writes OpenMetrics text into a string. Families must not be interleaved: call family(), then
// its samples, then the next family(). finish() appends `# EOF`.
class Writer {
public:
    explicit Writer(std::string* out) : out_(out) {}

    // `# TYPE name type`, `# UNIT name unit` (when unit is not empty; name must then end in
    // "_" + unit) and `# HELP name help` (help escaped like a label value, minus `"`).
    void family(std::string_view name, Type type, std::string_view help, std::string_view unit = {});
    // One sample line: name (with its suffix, e.g. "_total"), labels as name/value pairs in the
    // order given (names are the program's; values are escaped), the value.
    void sample(std::string_view name, std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                double value);
    // A sample whose labels are already escaped and joined (`a="x",b="y"`, as labelText()
    // makes them), plus an optional last label (`le`) whose value needs no escaping.
    void sampleEscaped(std::string_view name, std::string_view labels, std::string_view last_label,
                       std::string_view last_value, double value);
    void finish() { out_->append("# EOF\n"); }

private:
    std::string* out_;
};

// ---- families ----

using LabelValues = std::vector<std::string>;

// A family's series, kept sorted by label values in one vector: a render walks memory in order
// (a std::map's nodes cost a cache miss each with thousands of series), a lookup is a binary
// search, and a new series (rare: a new workflow or plugin) shifts the ones after it.
template <class S>
class SeriesList {
public:
    using Item = std::pair<LabelValues, S>;
    using iterator = typename std::vector<Item>::iterator;
    using const_iterator = typename std::vector<Item>::const_iterator;
    iterator begin() { return items_.begin(); }
    iterator end() { return items_.end(); }
    const_iterator begin() const { return items_.begin(); }
    const_iterator end() const { return items_.end(); }
    size_t size() const { return items_.size(); }
    iterator find(const LabelValues& key) {
        auto it = lowerBound(key);
        return it != items_.end() && it->first == key ? it : items_.end();
    }
    const_iterator find(const LabelValues& key) const { return const_cast<SeriesList*>(this)->find(key); }
    // Inserts (key, s) in order; key must not be present.
    iterator insert(const LabelValues& key, S s) { return items_.insert(lowerBound(key), Item{key, std::move(s)}); }
    template <class Pred>
    void eraseIf(Pred pred) {
        std::erase_if(items_, pred);
    }

private:
    iterator lowerBound(const LabelValues& key) {
        return std::lower_bound(items_.begin(), items_.end(), key,
                                [](const Item& item, const LabelValues& k) { return item.first < k; });
    }
    std::vector<Item> items_;
};

class Family {
public:
    Family(std::string name, Type type, std::string help, std::string unit, std::vector<std::string> label_names);
    virtual ~Family() = default;
    const std::string& name() const { return name_; }
    Type type() const { return type_; }
    const std::vector<std::string>& labelNames() const { return label_names_; }
    // Drops every series for which keep(values) is false.
    virtual void retainSeries(const std::function<bool(const LabelValues&)>& keep) = 0;
    virtual size_t seriesCount() const = 0;
    virtual void render(Writer& w) const = 0;

protected:
    // Throws std::invalid_argument unless values has one value per label name.
    void checkArity(const LabelValues& values) const;

    std::string name_;
    Type type_;
    std::string help_;
    std::string unit_;
    std::vector<std::string> label_names_;
};

// A counter or a gauge: one double per series, rendered in label-value order. Each series
// keeps its labels escaped once, when it is made, so that a render only copies them.
class ScalarFamily final : public Family {
public:
    using Family::Family;
    // The series' value, created at 0 on first use; valid until the next series is made.
    double& at(const LabelValues& values);
    void inc(const LabelValues& values, double by = 1) { at(values) += by; }
    void set(const LabelValues& values, double v) { at(values) = v; }
    // The series' value, or nullptr when it does not exist (tests, seeding).
    const double* find(const LabelValues& values) const;
    void retainSeries(const std::function<bool(const LabelValues&)>& keep) override;
    size_t seriesCount() const override { return series_.size(); }
    void render(Writer& w) const override;

private:
    struct Series {
        double value = 0;
        std::string labels; // labelText()
    };
    SeriesList<Series> series_;
};

struct HistogramSeries {
    std::vector<uint64_t> buckets; // non-cumulative counts per upper bound; the last is +Inf
    double sum = 0;
    uint64_t count = 0;
    std::string labels; // labelText(), made once
};

class HistogramFamily final : public Family {
public:
    // bounds: the finite upper bounds, strictly increasing (+Inf is added).
    HistogramFamily(std::string name, std::string help, std::string unit, std::vector<std::string> label_names,
                    std::vector<double> bounds);
    void observe(const LabelValues& values, double v);
    const HistogramSeries* find(const LabelValues& values) const;
    const std::vector<double>& bounds() const { return bounds_; }
    void retainSeries(const std::function<bool(const LabelValues&)>& keep) override;
    size_t seriesCount() const override { return series_.size(); }
    void render(Writer& w) const override;

private:
    std::vector<double> bounds_;
    std::vector<std::string> le_; // the le label of each bucket, +Inf last
    SeriesList<HistogramSeries> series_;
};

// Families in the order they were made, plus collectors: functions that write families of
// their own at render time (for numbers another module keeps, e.g. notification outcomes).
class Registry {
public:
    // Each makes a family (std::invalid_argument when the name is invalid or already taken, or
    // a label name is invalid or "le"). Names are given without the "_total" of counters.
    ScalarFamily& counter(std::string name, std::string help, std::vector<std::string> label_names = {});
    ScalarFamily& gauge(std::string name, std::string help, std::vector<std::string> label_names = {},
                        std::string unit = {});
    HistogramFamily& histogram(std::string name, std::string help, std::vector<std::string> label_names,
                               std::vector<double> bounds, std::string unit = {});
    // Rendered after the families, in the order added; a collector writes whole families.
    void addCollector(std::function<void(Writer&)> collector);
    // In every family with the label `label`, the series whose value of it keep() refuses go
    // (the workflows a reload removed).
    void retainLabelValues(std::string_view label, const std::function<bool(std::string_view)>& keep);
    // The whole exposition, ending in "# EOF\n".
    std::string render() const;
    // Appends the families and collectors without "# EOF" (for a caller that adds its own).
    void renderInto(Writer& w) const;

private:
    void claim(const std::string& name, Type type, const std::vector<std::string>& label_names,
               const std::string& unit);

    std::vector<std::unique_ptr<Family>> families_;
    std::vector<std::function<void(Writer&)>> collectors_;
    mutable size_t last_size_ = 0; // render() reserves this much
};

} // namespace taskhub::metrics

#endif // TASKHUB_METRICS_REGISTRY_H
