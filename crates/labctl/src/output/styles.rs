//! Colours, off unless the stream is a terminal and NO_COLOR is unset.

#[derive(Debug, Clone, Copy)]
pub(crate) struct Styles {
    on: bool,
}

impl Styles {
    pub(crate) fn new(on: bool) -> Styles {
        Styles { on }
    }
    fn paint(self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub(crate) fn error(self, s: &str) -> String {
        self.paint("1;31", s)
    }
    pub(crate) fn warn(self, s: &str) -> String {
        self.paint("1;33", s)
    }
    pub(crate) fn ok(self, s: &str) -> String {
        self.paint("32", s)
    }
    pub(crate) fn hint(self, s: &str) -> String {
        self.paint("36", s)
    }
    pub(crate) fn dim(self, s: &str) -> String {
        self.paint("2", s)
    }
}
