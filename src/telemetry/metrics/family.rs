//! The one way a metric is recorded: a [`Family`] of handles, one per value of its labels,
//! each registered with the recorder the first time it is used and kept, so recording is an
//! index into a table (no key is built, hashed or looked up per call). Label values are closed
//! enums declared with [`label_values!`], which writes each enum's label strings and its list of
//! values once; an unlabelled metric is a family over `()`.
//!
//! This module knows nothing of what is measured: the families themselves are in `catalog.rs`.

use std::marker::PhantomData;
use std::sync::OnceLock;

/// A closed set of label values: each value is one series of a [`Family`].
pub trait Labels: Copy + 'static {
    /// How many values (series) there are.
    const COUNT: usize;
    /// This value's place in `0..COUNT`.
    fn index(self) -> usize;
    /// The `(key, value)` label pairs of this value's series.
    fn pairs(self) -> Vec<(&'static str, &'static str)>;
    /// Every value.
    fn values() -> Vec<Self>;
}

/// An unlabelled metric: one series.
impl Labels for () {
    const COUNT: usize = 1;
    fn index(self) -> usize {
        0
    }
    fn pairs(self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
    fn values() -> Vec<Self> {
        vec![()]
    }
}

/// Two labels: one series per pair of values.
impl<A: Labels, B: Labels> Labels for (A, B) {
    const COUNT: usize = A::COUNT * B::COUNT;
    fn index(self) -> usize {
        self.0.index() * B::COUNT + self.1.index()
    }
    fn pairs(self) -> Vec<(&'static str, &'static str)> {
        let mut pairs = self.0.pairs();
        pairs.extend(self.1.pairs());
        pairs
    }
    fn values() -> Vec<Self> {
        A::values()
            .into_iter()
            .flat_map(|a| B::values().into_iter().map(move |b| (a, b)))
            .collect()
    }
}

/// Declares a label enum: its variants, each variant's label value, and the label key. It
/// derives `Debug, Clone, Copy, PartialEq, Eq`, and gives `ALL` (every value, in declaration
/// order), `label()` and [`Labels`].
macro_rules! label_values {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $key:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The label value.
            pub fn label(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )+
                }
            }
        }

        impl $crate::telemetry::Labels for $name {
            const COUNT: usize = $name::ALL.len();
            fn index(self) -> usize {
                self as usize
            }
            fn pairs(self) -> Vec<(&'static str, &'static str)> {
                vec![($key, self.label())]
            }
            fn values() -> Vec<Self> {
                $name::ALL.to_vec()
            }
        }
    };
}
pub(crate) use label_values;

/// A kind of metric handle.
pub trait Handle: Sized + Send + Sync + 'static {
    /// Registers one series with the installed recorder.
    fn register(name: &'static str, labels: Vec<(&'static str, &'static str)>) -> Self;
    /// Shows a just-registered series at its zero value on the next scrape.
    fn show(&self) {}
}

impl Handle for metrics::Counter {
    fn register(name: &'static str, labels: Vec<(&'static str, &'static str)>) -> Self {
        metrics::counter!(name, labels_of(labels))
    }
    fn show(&self) {
        self.increment(0);
    }
}

impl Handle for metrics::Gauge {
    fn register(name: &'static str, labels: Vec<(&'static str, &'static str)>) -> Self {
        metrics::gauge!(name, labels_of(labels))
    }
}

impl Handle for metrics::Histogram {
    fn register(name: &'static str, labels: Vec<(&'static str, &'static str)>) -> Self {
        metrics::histogram!(name, labels_of(labels))
    }
}

fn labels_of(pairs: Vec<(&'static str, &'static str)>) -> Vec<metrics::Label> {
    pairs
        .into_iter()
        .map(|(k, v)| metrics::Label::new(k, v))
        .collect()
}

/// One metric: its name and a handle per value of its labels `L`.
pub struct Family<L, H> {
    name: &'static str,
    handles: OnceLock<Box<[OnceLock<H>]>>,
    labels: PhantomData<fn(L)>,
}

impl<L: Labels, H: Handle> Family<L, H> {
    /// The metric `name`; no series exists until one is recorded (or [`Family::show_all`]).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            handles: OnceLock::new(),
            labels: PhantomData,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The handle of the series for `labels`, registered on first use. The recorder is
    /// installed first ([`super::metrics_handle`]), so a handle is never one of the no-op
    /// recorder's.
    pub fn get(&self, labels: L) -> &H {
        let handles = self
            .handles
            .get_or_init(|| (0..L::COUNT).map(|_| OnceLock::new()).collect());
        let cell = &handles[labels.index()];
        cell.get_or_init(|| {
            super::metrics_handle();
            H::register(self.name, labels.pairs())
        })
    }
}

impl<L: Labels, H: Handle> Family<L, H> {
    /// Registers `labels`' series and shows it at zero (a counter) before anything is recorded.
    pub fn show(&self, labels: L) {
        self.get(labels).show();
    }

    /// [`Family::show`] for every value of `L`, so a scrape lists each series before its first
    /// event.
    pub fn show_all(&self) {
        for labels in L::values() {
            self.show(labels);
        }
    }
}

impl<H: Handle> Family<(), H> {
    /// The one series of an unlabelled metric.
    pub fn one(&self) -> &H {
        self.get(())
    }
}

impl<L, H> std::fmt::Debug for Family<L, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family").field("name", &self.name).finish()
    }
}
