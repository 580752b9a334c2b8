//! The routes the service answers: what a request matched, and the bounded label set
//! under which metrics count it (every unknown path is one label, never the raw path).

/// The route a request matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Greet,
    Healthz,
    Readyz,
    Metrics,
    Unmatched,
}

impl Route {
    pub const ALL: [Route; 5] = [
        Self::Greet,
        Self::Healthz,
        Self::Readyz,
        Self::Metrics,
        Self::Unmatched,
    ];

    pub fn of(path: &str) -> Self {
        match path {
            "/greet" => Self::Greet,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/metrics" => Self::Metrics,
            _ => Self::Unmatched,
        }
    }

    /// The `route` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greet => "/greet",
            Self::Healthz => "/healthz",
            Self::Readyz => "/readyz",
            Self::Metrics => "/metrics",
            Self::Unmatched => "unmatched",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_bounded_label_set() {
        assert_eq!(Route::of("/greet"), Route::Greet);
        assert_eq!(Route::of("/greet/"), Route::Unmatched);
        assert_eq!(Route::of("/x/y/z").as_str(), "unmatched");
        // Every named route's label is its path.
        for route in Route::ALL.into_iter().filter(|r| *r != Route::Unmatched) {
            assert_eq!(Route::of(route.as_str()), route);
        }
    }
}
