//! The requests of each phase: `/healthz`, creates, gets by id, searches.

use reqwest::{Client, RequestBuilder, Url};
use serde_json::Value;

use crate::phase::Operation;
use crate::rng::Rng;
use crate::workload;

/// Per-phase streams of the request generators, so phases never draw the same numbers.
const CREATE_STREAM: u64 = 1;
const PRELOAD_STREAM: u64 = 2;
const SEARCH_STREAM: u64 = 3;
const SOAK_STREAM: u64 = 4;
const ROOT_SEARCH_STREAM: u64 = 5;

/// The streams of the ads a run creates, for the tantivy baseline that indexes them again.
pub(crate) const CREATED_STREAMS: [u64; 2] = [CREATE_STREAM, PRELOAD_STREAM];

/// `GET /healthz`: the baseline, the cheapest request the server answers.
#[derive(Debug)]
pub struct Healthz {
    url: String,
}

impl Healthz {
    /// Against the server at `base`.
    pub fn new(base: &str) -> Healthz {
        Healthz {
            url: format!("{base}/healthz"),
        }
    }
}

impl Operation for Healthz {
    type Output = ();

    fn request(&self, client: &Client, _index: u64) -> RequestBuilder {
        client.get(&self.url)
    }

    fn accept(&self, _index: u64, _body: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// An ad the create phase made.
#[derive(Debug, Clone)]
pub struct CreatedAd {
    /// Its publisher.
    pub publisher: &'static str,
    /// The `adId` the server assigned.
    pub ad_id: String,
}

/// `POST /publisher/{p}/ad` with a generated ad; yields the assigned `adId`.
#[derive(Debug)]
pub struct Create {
    base: String,
    seed: u64,
    stream: u64,
}

impl Create {
    /// The measured creates.
    pub fn measured(base: &str, seed: u64) -> Create {
        Create {
            base: base.to_string(),
            seed,
            stream: CREATE_STREAM,
        }
    }

    /// The preload: other ads, made only to grow the index before searching.
    pub fn preload(base: &str, seed: u64) -> Create {
        Create {
            base: base.to_string(),
            seed,
            stream: PRELOAD_STREAM,
        }
    }

    /// The soak's creates.
    pub fn soak(base: &str, seed: u64) -> Create {
        Create {
            base: base.to_string(),
            seed,
            stream: SOAK_STREAM,
        }
    }
}

impl Operation for Create {
    type Output = CreatedAd;

    fn request(&self, client: &Client, index: u64) -> RequestBuilder {
        let publisher = workload::publisher_of(index);
        let body = workload::ad_body(&mut Rng::for_request(self.seed, self.stream, index));
        client
            .post(format!("{}/publisher/{publisher}/ad", self.base))
            .json(&body)
    }

    fn accept(&self, index: u64, body: &[u8]) -> Result<CreatedAd, String> {
        let ad: Value =
            serde_json::from_slice(body).map_err(|e| format!("the created ad is not JSON: {e}"))?;
        let ad_id = ad
            .get("adId")
            .and_then(Value::as_str)
            .ok_or("the created ad has no string `adId`")?;
        Ok(CreatedAd {
            publisher: workload::publisher_of(index),
            ad_id: ad_id.to_string(),
        })
    }
}

/// `GET /publisher/{p}/ad/{adId}` over the created ads, in the (shuffled) order given,
/// wrapping around when more gets than ads are asked for.
#[derive(Debug)]
pub struct Get {
    /// Never empty.
    urls: Vec<String>,
}

impl Get {
    /// Gets of `ads`; `None` when there are none to get.
    pub fn new(base: &str, ads: &[CreatedAd]) -> Option<Get> {
        if ads.is_empty() {
            return None;
        }
        Some(Get {
            urls: ads
                .iter()
                .map(|ad| format!("{base}/publisher/{}/ad/{}", ad.publisher, ad.ad_id))
                .collect(),
        })
    }

    /// The URL of request `index`.
    fn url(&self, index: u64) -> &str {
        &self.urls[(index % self.urls.len() as u64) as usize]
    }
}

impl Operation for Get {
    type Output = ();

    fn request(&self, client: &Client, index: u64) -> RequestBuilder {
        client.get(self.url(index))
    }

    fn accept(&self, index: u64, body: &[u8]) -> Result<(), String> {
        let wanted = self.url(index).rsplit('/').next().unwrap_or_default();
        // A cheap check that the answer is the ad asked for, without parsing it.
        let found =
            !wanted.is_empty() && body.windows(wanted.len()).any(|w| w == wanted.as_bytes());
        if found {
            Ok(())
        } else {
            Err(format!("the body does not mention adId {wanted}"))
        }
    }
}

/// `GET /search?q=WORD&limit=20`, sometimes with `category` or `minPrice`; or, as the
/// rows of issue 13 ask, only `GET /search?q=WORD` or the seed's `GET /?q=WORD`.
#[derive(Debug)]
pub struct Search {
    url: Url,
    seed: u64,
    kind: SearchKind,
}

/// Which search requests a [`Search`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SearchKind {
    /// `/search` with `limit=20` and now and then a filter.
    Filtered,
    /// `/search?q=WORD`.
    Word,
    /// `/?q=WORD` (the seed's search: a JSON array of up to 25 ads).
    Root,
}

impl Search {
    /// `/search` with filters, against the server at `base`.
    pub fn new(base: &str, seed: u64) -> Result<Search, String> {
        Search::of_kind(base, "/search", seed, SearchKind::Filtered)
    }

    /// `/search?q=WORD` only.
    pub fn word(base: &str, seed: u64) -> Result<Search, String> {
        Search::of_kind(base, "/search", seed, SearchKind::Word)
    }

    /// The seed's `/?q=WORD`.
    pub fn root(base: &str, seed: u64) -> Result<Search, String> {
        Search::of_kind(base, "/", seed, SearchKind::Root)
    }

    fn of_kind(base: &str, path: &str, seed: u64, kind: SearchKind) -> Result<Search, String> {
        let url = Url::parse(&format!("{base}{path}"))
            .map_err(|e| format!("bad search URL from {base:?}: {e}"))?;
        Ok(Search { url, seed, kind })
    }
}

impl Operation for Search {
    type Output = ();

    fn request(&self, client: &Client, index: u64) -> RequestBuilder {
        let mut url = self.url.clone();
        let stream = match self.kind {
            SearchKind::Root => ROOT_SEARCH_STREAM,
            _ => SEARCH_STREAM,
        };
        let mut params = workload::search_params(&mut Rng::for_request(self.seed, stream, index));
        if self.kind != SearchKind::Filtered {
            params.truncate(1);
        }
        url.query_pairs_mut().extend_pairs(params);
        client.get(url)
    }

    fn accept(&self, _index: u64, body: &[u8]) -> Result<(), String> {
        if self.kind == SearchKind::Root {
            return if body.first() == Some(&b'[') {
                Ok(())
            } else {
                Err("the body is not a JSON array".into())
            };
        }
        // `{total, items, nextCursor}`: a cheap look for the field rather than a parse.
        if body.windows(7).any(|w| w == b"\"items\"") {
            Ok(())
        } else {
            Err("the body has no `items`".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_reads_the_ad_id() {
        let create = Create::measured("http://127.0.0.1:1", 1);
        let ad = create
            .accept(1, br#"{"adId":"01HV4Z0J8Q2W3E4R5T6Y7U8I9O","version":0}"#)
            .expect("ad");
        assert_eq!(ad.ad_id, "01HV4Z0J8Q2W3E4R5T6Y7U8I9O");
        assert_eq!(ad.publisher, workload::publisher_of(1));
        assert!(create.accept(0, b"{}").is_err());
        assert!(create.accept(0, b"not json").is_err());
    }

    #[test]
    fn get_checks_the_ad_id_and_wraps_around() {
        let ads = vec![
            CreatedAd {
                publisher: "acme",
                ad_id: "A1".into(),
            },
            CreatedAd {
                publisher: "hooli",
                ad_id: "B2".into(),
            },
        ];
        let get = Get::new("http://127.0.0.1:1", &ads).expect("ads");
        assert!(Get::new("http://127.0.0.1:1", &[]).is_none());
        let client = Client::new();
        let request = get.request(&client, 3).build().expect("request");
        assert_eq!(request.url().path(), "/publisher/hooli/ad/B2");
        assert!(get.accept(3, br#"{"adId":"B2"}"#).is_ok());
        assert!(get.accept(2, br#"{"adId":"B2"}"#).is_err());
    }

    #[test]
    fn search_encodes_its_query() {
        let search = Search::new("http://127.0.0.1:1", 1).expect("search");
        let client = Client::new();
        for index in 0..200 {
            let request = search.request(&client, index).build().expect("request");
            let url = request.url();
            assert_eq!(url.path(), "/search");
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            assert!(pairs.iter().any(|(k, v)| k == "limit" && v == "20"));
            assert!(pairs.iter().any(|(k, v)| k == "q" && !v.is_empty()));
        }
        assert!(
            search
                .accept(0, br#"{"total":0,"items":[],"nextCursor":null}"#)
                .is_ok()
        );
        assert!(search.accept(0, b"[]").is_err());

        let root = Search::root("http://127.0.0.1:1", 1).expect("root");
        let request = root.request(&client, 5).build().expect("request");
        assert_eq!(request.url().path(), "/");
        let pairs: Vec<(String, String)> = request.url().query_pairs().into_owned().collect();
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!(pairs[0].0, "q");
        assert!(root.accept(0, b"[]").is_ok());
        assert!(root.accept(0, b"{}").is_err());
        let word = Search::word("http://127.0.0.1:1", 1).expect("word");
        let request = word.request(&client, 5).build().expect("request");
        assert_eq!(request.url().path(), "/search");
        assert_eq!(request.url().query_pairs().count(), 1);
    }
}
