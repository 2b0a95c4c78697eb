//! What the load looks like: realistic classified ads and the searches run over them.
//!
//! Ads are drawn from a small vocabulary (a category, its items, adjectives, cities,
//! tags) so that searches hit a realistic share of the index: common words match many
//! ads, filters narrow them. Prices are decimals such as `19.99`, sent as JSON numbers
//! and stored exactly by the server.

use serde_json::{Map, Number, Value};

use crate::rng::Rng;

/// Publishers the ads are spread over (valid `publisherId`s: `[A-Za-z0-9_.-]`).
pub const PUBLISHERS: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark-industries",
    "wayne.enterprises",
    "cyberdyne_systems",
];

/// The publisher of the ad created by request `index` of a create phase.
pub fn publisher_of(index: u64) -> &'static str {
    PUBLISHERS[(index % PUBLISHERS.len() as u64) as usize]
}

/// A category with the items sold in it, its usual tags and its price range in whole
/// currency units.
struct Category {
    name: &'static str,
    items: &'static [&'static str],
    tags: &'static [&'static str],
    price: (u64, u64),
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "furniture",
        items: &[
            "sofa",
            "armchair",
            "table",
            "wardrobe",
            "desk",
            "bookshelf",
            "bed",
        ],
        tags: &["oak", "ikea", "living-room", "bedroom", "assembled"],
        price: (15, 900),
    },
    Category {
        name: "electronics",
        items: &[
            "laptop",
            "monitor",
            "headphones",
            "camera",
            "phone",
            "speaker",
            "tablet",
        ],
        tags: &[
            "warranty",
            "charger-included",
            "unlocked",
            "bluetooth",
            "4k",
        ],
        price: (10, 1500),
    },
    Category {
        name: "bikes",
        items: &["bike", "bicycle", "e-bike", "helmet", "saddle", "wheelset"],
        tags: &["road", "mountain", "city", "carbon", "shimano"],
        price: (20, 2500),
    },
    Category {
        name: "books",
        items: &[
            "novel",
            "cookbook",
            "textbook",
            "atlas",
            "comics",
            "encyclopedia",
        ],
        tags: &[
            "paperback",
            "hardcover",
            "first-edition",
            "signed",
            "collection",
        ],
        price: (1, 120),
    },
    Category {
        name: "garden",
        items: &[
            "lawnmower",
            "hose",
            "barbecue",
            "parasol",
            "planter",
            "shed",
        ],
        tags: &["outdoor", "petrol", "cordless", "weatherproof", "summer"],
        price: (5, 700),
    },
    Category {
        name: "home appliances",
        items: &[
            "fridge",
            "washer",
            "dishwasher",
            "microwave",
            "kettle",
            "vacuum",
        ],
        tags: &["energy-a", "stainless", "silent", "compact", "built-in"],
        price: (10, 1200),
    },
    Category {
        name: "sports",
        items: &[
            "skis",
            "snowboard",
            "treadmill",
            "dumbbells",
            "racket",
            "tent",
        ],
        tags: &["winter", "fitness", "camping", "tennis", "adjustable"],
        price: (5, 1800),
    },
    Category {
        name: "music",
        items: &[
            "guitar",
            "piano",
            "violin",
            "drums",
            "amplifier",
            "keyboard",
        ],
        tags: &[
            "acoustic",
            "electric",
            "vintage-gear",
            "case-included",
            "beginner",
        ],
        price: (25, 4000),
    },
];

const ADJECTIVES: &[&str] = &[
    "vintage",
    "used",
    "new",
    "compact",
    "handmade",
    "refurbished",
    "lightweight",
    "classic",
    "modern",
    "rare",
    "spacious",
    "foldable",
    "waterproof",
    "premium",
];

const CITIES: &[&str] = &[
    "Berlin", "Lyon", "Leeds", "Porto", "Gdansk", "Utrecht", "Bologna", "Tartu", "Ghent",
];

const REMARKS: &[&str] = &[
    "In excellent condition.",
    "Barely used.",
    "A few minor scratches, fully working.",
    "Pick-up only.",
    "Can deliver locally for a small fee.",
    "Original box and manual included.",
    "Price negotiable for a quick sale.",
    "From a smoke-free and pet-free home.",
    "Must go this week, moving abroad.",
    "Serviced last month.",
];

const GENERAL_TAGS: &[&str] = &[
    "bargain",
    "like-new",
    "local-pickup",
    "delivery",
    "negotiable",
];

const CURRENCIES: &[&str] = &["EUR", "EUR", "EUR", "USD", "GBP", ""];

const CENTS: &[u64] = &[0, 50, 95, 99, 99, 49, 90];

const MIN_PRICES: &[&str] = &["5", "19.99", "50", "100", "250.50", "1000"];

/// The JSON body of a create: `adTitle`, `adDescription`, `price`, `currency`,
/// `category`, `tags` (0 to 5 distinct tags; price absent for about 1 ad in 20).
pub fn ad_body(rng: &mut Rng) -> Value {
    let category = &CATEGORIES[rng.below(CATEGORIES.len())];
    let item = rng.pick(category.items).unwrap_or("item");
    let adjective = rng.pick(ADJECTIVES).unwrap_or("used");
    let city = rng.pick(CITIES).unwrap_or("Berlin");
    let title = if rng.chance(40) {
        format!("{adjective} {item} in {city}")
    } else {
        format!("{adjective} {item}")
    };
    let mut description = format!("{} {item} for sale in {city}.", capitalised(adjective));
    for _ in 0..rng.between(1, 3) {
        description.push(' ');
        description.push_str(rng.pick(REMARKS).unwrap_or(""));
    }

    let mut body = Map::new();
    body.insert("adTitle".into(), Value::String(title));
    body.insert("adDescription".into(), Value::String(description));
    if !rng.chance(5) {
        body.insert("price".into(), price(rng, category.price));
    }
    let currency = rng.pick(CURRENCIES).unwrap_or("");
    body.insert("currency".into(), Value::String(currency.into()));
    body.insert("category".into(), Value::String(category.name.into()));
    body.insert("tags".into(), Value::Array(tags(rng, category.tags)));
    Value::Object(body)
}

/// The query string pairs of one `/search`: a word that occurs in titles, `limit=20`,
/// and now and then a `category` or `minPrice` filter.
pub fn search_params(rng: &mut Rng) -> Vec<(&'static str, String)> {
    let category = &CATEGORIES[rng.below(CATEGORIES.len())];
    let word = match rng.below(4) {
        0 => rng.pick(ADJECTIVES),
        1 => rng.pick(CITIES),
        _ => rng.pick(category.items),
    }
    .unwrap_or("used");
    let mut params = vec![("q", word.to_string()), ("limit", "20".to_string())];
    if rng.chance(25) {
        params.push(("category", category.name.to_string()));
    }
    if rng.chance(25) {
        params.push(("minPrice", rng.pick(MIN_PRICES).unwrap_or("5").to_string()));
    }
    params
}

/// The ad every PostgreSQL append stores: a generated ad as adledger answers it (with
/// its `adId`, `publisherId`, `version` and revision metadata), its description lengthened
/// with remarks until the JSON is about 1 KB, the size of a stored revision. It holds no
/// `null`, `true` or `false`: pgbench would read `:null` as one of its variables.
pub fn postgres_ad_json(seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut ad = ad_body(&mut rng);
    if let Some(object) = ad.as_object_mut() {
        object.insert(
            "adId".into(),
            Value::String("01JDZ8R3WQ7V4KX2M9PA5BN6CT".into()),
        );
        object.insert("publisherId".into(), Value::String(publisher_of(0).into()));
        object.insert("version".into(), Value::from(0));
        object.insert(
            "metadata".into(),
            serde_json::json!({
                "txId": "01JDZ8R3WQ9YHF0T6S2GD4KMXE",
                "txTime": "2026-11-29T14:00:00.000Z",
            }),
        );
    }
    let mut index = 0;
    while ad.to_string().len() < 1_000 {
        let remark = REMARKS[index % REMARKS.len()];
        index += 1;
        if let Some(Value::String(description)) = ad.get_mut("adDescription") {
            description.push(' ');
            description.push_str(remark);
        }
    }
    ad.to_string()
}

/// A decimal price in `range`, ending in realistic cents (`19.99`, `250.50`, `45`).
fn price(rng: &mut Rng, range: (u64, u64)) -> Value {
    let units = rng.between(range.0, range.1);
    let cents = rng.pick(CENTS).unwrap_or(0);
    let text = if cents == 0 {
        units.to_string()
    } else {
        format!("{units}.{cents:02}")
    };
    // The API accepts a numeric string too, should the number ever fail to parse.
    match text.parse::<Number>() {
        Ok(number) => Value::Number(number),
        Err(_) => Value::String(text),
    }
}

/// Zero to five distinct tags from the category's tags and the general ones.
fn tags(rng: &mut Rng, category_tags: &[&'static str]) -> Vec<Value> {
    let mut pool: Vec<&str> = category_tags.iter().chain(GENERAL_TAGS).copied().collect();
    rng.shuffle(&mut pool);
    let count = rng.below(6).min(pool.len());
    pool[..count]
        .iter()
        .map(|tag| Value::String((*tag).into()))
        .collect()
}

/// `word` with its first letter in upper case.
fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ads_satisfy_the_http_contract() {
        let mut with_price = 0;
        for index in 0..2_000 {
            let ad = ad_body(&mut Rng::for_request(1, 0, index));
            let title = ad["adTitle"].as_str().expect("title");
            assert!((1..=200).contains(&title.chars().count()), "{title}");
            assert!(ad["adDescription"].as_str().expect("description").len() <= 10_000);
            assert!(ad["category"].as_str().expect("category").len() <= 100);
            let currency = ad["currency"].as_str().expect("currency");
            assert!(currency.is_empty() || currency.len() == 3);
            let tags: Vec<&str> = ad["tags"]
                .as_array()
                .expect("tags")
                .iter()
                .map(|t| t.as_str().expect("tag"))
                .collect();
            assert!(tags.len() <= 5);
            assert_eq!(tags.iter().collect::<HashSet<_>>().len(), tags.len());
            if let Some(price) = ad.get("price") {
                with_price += 1;
                let text = price.to_string();
                assert!(!text.starts_with('"'), "price {text} is a number");
                let value: f64 = text.parse().expect("decimal");
                assert!(value >= 0.0);
            }
            let object = ad.as_object().expect("object");
            for key in object.keys() {
                assert!(
                    [
                        "adTitle",
                        "adDescription",
                        "price",
                        "currency",
                        "category",
                        "tags"
                    ]
                    .contains(&key.as_str())
                );
            }
        }
        assert!(with_price > 1_700, "most ads have a price");
    }

    #[test]
    fn prices_keep_their_decimals() {
        let mut seen_cents = false;
        for index in 0..200 {
            let text = price(&mut Rng::for_request(2, 0, index), (1, 100)).to_string();
            seen_cents |= text.contains('.');
            if let Some((_, cents)) = text.split_once('.') {
                assert_eq!(cents.len(), 2, "{text}");
            }
        }
        assert!(seen_cents);
    }

    #[test]
    fn searches_use_title_words() {
        for index in 0..500 {
            let params = search_params(&mut Rng::for_request(3, 0, index));
            assert_eq!(params[0].0, "q");
            assert!(!params[0].1.is_empty());
            assert!(params.contains(&("limit", "20".to_string())));
        }
    }

    #[test]
    fn the_postgres_ad_is_about_a_kilobyte() {
        let json = postgres_ad_json(1);
        assert!((1_000..1_200).contains(&json.len()), "{}", json.len());
        let ad: Value = serde_json::from_str(&json).expect("JSON");
        assert!(ad["adTitle"].is_string());
        for word in [":null", ":true", ":false"] {
            assert!(!json.contains(word), "pgbench would substitute {word}");
        }
        assert_eq!(postgres_ad_json(1), json);
    }

    #[test]
    fn publishers_are_valid_ids() {
        for p in PUBLISHERS {
            assert!(
                p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            );
        }
        assert_eq!(publisher_of(0), "acme");
        assert_eq!(publisher_of(PUBLISHERS.len() as u64), "acme");
    }
}
