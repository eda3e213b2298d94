//! Injected API faults: a Status answer, a request that never gets an answer, or a
//! connection closed without one, for requests matching a method and a path prefix.

/// What a matching request gets instead of its real answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFault {
    /// A `metav1.Status` with this code, reason and message (e.g. 401 Unauthorized,
    /// 403 Forbidden, 500 InternalError, 503 ServiceUnavailable).
    Status {
        code: u16,
        reason: String,
        message: String,
    },
    /// Never answer: the client's own timeout must fire.
    Hang,
    /// Close the connection without an answer.
    CloseConnection,
}

#[derive(Debug, Clone)]
struct Rule {
    method: Option<String>,
    path_prefix: String,
    fault: ApiFault,
    /// None: forever.
    remaining: Option<usize>,
}

/// The registered faults, first registered first matched.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<Rule>,
}

impl Faults {
    pub fn add(
        &mut self,
        method: Option<&str>,
        path_prefix: &str,
        fault: ApiFault,
        times: Option<usize>,
    ) {
        if times == Some(0) {
            return;
        }
        self.rules.push(Rule {
            method: method.map(str::to_ascii_uppercase),
            path_prefix: path_prefix.to_string(),
            fault,
            remaining: times,
        });
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The fault for this request, if any, counting it against its `times`.
    pub fn take(&mut self, method: &str, path: &str) -> Option<ApiFault> {
        let i = self.rules.iter().position(|r| {
            r.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && path.starts_with(&r.path_prefix)
        })?;
        let fault = self.rules[i].fault.clone();
        if let Some(n) = self.rules[i].remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.rules.remove(i);
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_method_and_prefix_and_run_out() {
        let mut f = Faults::default();
        f.add(Some("get"), "/api/v1/namespaces", ApiFault::Hang, Some(1));
        f.add(None, "/version", ApiFault::CloseConnection, None);
        assert_eq!(f.take("POST", "/api/v1/namespaces"), None);
        assert_eq!(f.take("GET", "/api/v1/namespaces/x"), Some(ApiFault::Hang));
        assert_eq!(f.take("GET", "/api/v1/namespaces/x"), None);
        for _ in 0..3 {
            assert_eq!(f.take("GET", "/version"), Some(ApiFault::CloseConnection));
        }
        f.clear();
        assert_eq!(f.take("GET", "/version"), None);
    }
}
