//! The exercise's "sentences" app (MichaelVL/istio-katas `sentences-app/app/app.py`),
//! one Flask app per mode chosen by env `SENTENCE_MODE` (default `age`):
//! - `age`: `/` → a random integer in `SENTENCE_AGE_MIN..=SENTENCE_AGE_MAX` (0..=100);
//! - `name`: `/` → one of `SENTENCE_NAMES` (comma-separated, default `Peter,Ray,Egon`),
//!   `/choices` → Python's `str(names)`;
//! - `sentence`: `/` → `requests.get(SENTENCE_NAME_SVC_URL).text` (default
//!   `http://name:5000`), then the same for `SENTENCE_AGE_SVC_URL` (`http://age:5000`),
//!   answering 200 `"{name} is {age} years"` whatever status those calls had. When a call
//!   raises (reset, refused, unresolvable) Flask answers 500 with Werkzeug's page.
//! - `random`: `/` → a random integer 0..=10000.
//!
//! Unknown paths get Werkzeug's 404 page. The pinned image installs `Flask==1.0.4`
//! without pinning Werkzeug; Flask 1.0.x only imports against Werkzeug ≤ 2.1 (and
//! Jinja2 < 3.1, itsdangerous < 2.1), whose error pages start with the HTML 3.2 doctype
//! (pallets/werkzeug `src/werkzeug/exceptions.py`, tags 1.0.1..2.1.2); Werkzeug ≥ 2.2
//! writes `<!doctype html>\n<html lang=en>`. [`WerkzeugPage`] picks one.

use crate::objects::{Pod, env_value};

/// Which Werkzeug generation renders the app's error pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WerkzeugPage {
    /// Werkzeug ≤ 2.1 (what Flask 1.0.4 in the pinned image can run with).
    #[default]
    Legacy,
    /// Werkzeug ≥ 2.2.
    Html5,
}

pub(crate) const INTERNAL_SERVER_ERROR: &str = "The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.";
pub(crate) const NOT_FOUND: &str = "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.";

/// Werkzeug's `HTTPException.get_body`.
pub(crate) fn werkzeug_page(
    style: WerkzeugPage,
    code: u16,
    name: &str,
    description: &str,
) -> String {
    let head = match style {
        WerkzeugPage::Legacy => "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n",
        WerkzeugPage::Html5 => "<!doctype html>\n<html lang=en>\n",
    };
    format!("{head}<title>{code} {name}</title>\n<h1>{name}</h1>\n<p>{description}</p>\n")
}

/// What an app in a pod does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mode {
    Sentence { name_url: String, age_url: String },
    Name { names: Vec<String> },
    Age { min: i64, max: i64 },
    Random,
}

pub(crate) fn mode(pod: &Pod) -> Mode {
    let env = |k: &str| pod.app_container().and_then(|c| env_value(c, k));
    match env("SENTENCE_MODE").unwrap_or("age") {
        "sentence" => Mode::Sentence {
            name_url: env("SENTENCE_NAME_SVC_URL")
                .unwrap_or("http://name:5000")
                .to_string(),
            age_url: env("SENTENCE_AGE_SVC_URL")
                .unwrap_or("http://age:5000")
                .to_string(),
        },
        "name" => Mode::Name {
            names: env("SENTENCE_NAMES")
                .unwrap_or("Peter,Ray,Egon")
                .split(',')
                .map(str::to_string)
                .collect(),
        },
        "random" => Mode::Random,
        _ => Mode::Age {
            min: env("SENTENCE_AGE_MIN")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            max: env("SENTENCE_AGE_MAX")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100),
        },
    }
}

/// Python's `str()` of a list of strings.
pub(crate) fn python_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// An app's answer (Flask: `text/html; charset=utf-8`).
#[derive(Debug, Clone)]
pub(crate) struct AppAnswer {
    pub status: u16,
    pub body: String,
}

/// A backend call from the app failed the way `requests` raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallRaised;

/// What the app needs from the world: randomness and outbound calls.
pub(crate) trait AppWorld {
    fn random(&self, below: u64) -> u64;
    /// `requests.get(url, timeout=1).text`, or the exception.
    fn get(
        &self,
        url: &str,
    ) -> impl std::future::Future<Output = Result<String, CallRaised>> + Send;
    fn page_style(&self) -> WerkzeugPage;
}

pub(crate) async fn handle<W: AppWorld + Sync>(mode: &Mode, path: &str, world: &W) -> AppAnswer {
    let path = path.split('?').next().unwrap_or(path);
    let not_found = || AppAnswer {
        status: 404,
        body: werkzeug_page(world.page_style(), 404, "Not Found", NOT_FOUND),
    };
    match (mode, path) {
        (Mode::Age { min, max }, "/") => {
            let span = u64::try_from(max - min + 1).unwrap_or(1).max(1);
            let age = min + i64::try_from(world.random(span)).unwrap_or(0);
            AppAnswer {
                status: 200,
                body: age.to_string(),
            }
        }
        (Mode::Name { names }, "/") => {
            let n = u64::try_from(names.len()).unwrap_or(1).max(1);
            let i = usize::try_from(world.random(n)).unwrap_or(0);
            AppAnswer {
                status: 200,
                body: names.get(i).cloned().unwrap_or_default(),
            }
        }
        (Mode::Name { names }, "/choices") => AppAnswer {
            status: 200,
            body: python_list(names),
        },
        (Mode::Random, "/") => AppAnswer {
            status: 200,
            body: world.random(10_001).to_string(),
        },
        (Mode::Sentence { name_url, age_url }, "/") => {
            let sentence = match world.get(name_url).await {
                Ok(name) => world
                    .get(age_url)
                    .await
                    .map(|age| format!("{name} is {age} years")),
                Err(e) => Err(e),
            };
            match sentence {
                Ok(body) => AppAnswer { status: 200, body },
                Err(CallRaised) => AppAnswer {
                    status: 500,
                    body: werkzeug_page(
                        world.page_style(),
                        500,
                        "Internal Server Error",
                        INTERNAL_SERVER_ERROR,
                    ),
                },
            }
        }
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn werkzeug_pages_match_both_generations() {
        assert_eq!(
            werkzeug_page(
                WerkzeugPage::Html5,
                500,
                "Internal Server Error",
                INTERNAL_SERVER_ERROR
            ),
            "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n"
        );
        assert!(
            werkzeug_page(WerkzeugPage::Legacy, 500, "Internal Server Error", INTERNAL_SERVER_ERROR)
                .starts_with("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n")
        );
    }

    #[test]
    fn python_prints_lists_with_its_own_quotes() {
        let v = vec!["Athos (v2)".to_string(), "d'Artagnan (v2)".to_string()];
        assert_eq!(python_list(&v), "['Athos (v2)', \"d'Artagnan (v2)\"]");
    }
}
