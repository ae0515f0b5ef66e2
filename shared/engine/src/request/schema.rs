//! The OpenAPI schema of a request body, generated from `rules`: every field with its JSON
//! type, bounds, default and whether it is required; `additionalProperties: false` on every
//! object; `maxItems` on the lists; and, for `return_model` and `withdrawal`, one variant per
//! kind or strategy that takes only that choice's parameters.
//!
//! A field that may be left out may also be `null` (serde reads both as absent). The rules
//! between fields (weights summing to 1, a valid correlation matrix, a ceiling above the floor,
//! years within the horizon, ...) have no JSON Schema form; each field's description states
//! those that concern it.

use std::borrow::Cow;

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::{PartialSchema, ToSchema};

use super::RequestLimits;
use super::input::SimulationRequestInput;
use super::rules::{self, Field, Kind, Limit, MAX_YEARS};

impl PartialSchema for SimulationRequestInput {
    fn schema() -> RefOr<Schema> {
        request_schema(&RequestLimits::default()).into()
    }
}

impl ToSchema for SimulationRequestInput {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SimulationRequestInput")
    }
}

/// The schema of `POST /simulations`' body under a deployment's limits.
pub fn request_schema(limits: &RequestLimits) -> Schema {
    let fields = rules::fields();
    let builder = Builder { fields: &fields, limits };
    let mut root = builder.object("", Vec::new());
    if let Schema::Object(object) = &mut root {
        object.description = Some(
            "Body of `POST /simulations`. Every number must be finite; unknown fields are \
             refused; every broken rule is reported with its JSON path."
                .to_owned(),
        );
        // The smallest useful request: the three required fields, everything else defaulted.
        object.examples =
            vec![json!({"starting_portfolio": 1_000_000, "monthly_spending": 4_000, "years": 30})];
    }
    root
}

struct Builder<'a> {
    fields: &'a [Field],
    limits: &'a RequestLimits,
}

/// The path of the object a field belongs to: `a.b` → `a`, `a[].b` → `a[]`, `a` → ``.
fn parent(path: &str) -> &str {
    match path.rfind('.') {
        Some(i) => &path[..i],
        None if path.ends_with("[]") => path.trim_end_matches("[]"),
        None => "",
    }
}

/// `ty`, or `ty` and `null` for a field that may be left out.
fn types(ty: Type, nullable: bool) -> SchemaType {
    if nullable { SchemaType::from_iter([ty, Type::Null]) } else { SchemaType::new(ty) }
}

impl Builder<'_> {
    fn field(&self, path: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.path == path)
    }

    fn children(&self, path: &str) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(move |f| parent(f.path) == path && f.path != path)
    }

    /// An object of the children of `path`; `null_members` may only be null (the parameters of
    /// a choice other than the variant's).
    fn object(&self, path: &str, null_members: Vec<&str>) -> Schema {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for child in self.children(path) {
            let name = rules::name_of(child.path);
            let schema = if null_members.contains(&child.path) {
                ObjectBuilder::new().schema_type(Type::Null).into()
            } else {
                self.schema(child)
            };
            object = object.property(name, schema);
            if child.required() {
                object = object.required(name);
            }
        }
        object.into()
    }

    fn schema(&self, field: &Field) -> Schema {
        let nullable = !field.required();
        let default = rules::default_value(&field.kind, self.limits.max_scenarios);
        let description = Some(description(field)).filter(|d| !d.is_empty());
        match &field.kind {
            Kind::Number(rule) => {
                let mut number = ObjectBuilder::new()
                    .schema_type(types(Type::Number, nullable))
                    .default(default)
                    .description(description);
                number = if rule.min_open {
                    number.exclusive_minimum(Some(rule.min))
                } else {
                    number.minimum(Some(rule.min))
                };
                number = if rule.max_open {
                    number.exclusive_maximum(Some(rule.max))
                } else {
                    number.maximum(Some(rule.max))
                };
                number.into()
            }
            Kind::Integer(rule) => ObjectBuilder::new()
                .schema_type(types(Type::Integer, nullable))
                .minimum(Some(rule.min))
                .maximum(Some(self.max(rule.max)))
                .default(default)
                .description(description)
                .into(),
            Kind::Choice { names, .. } => {
                let mut values: Vec<Value> = names.iter().map(|n| Value::from(*n)).collect();
                if nullable {
                    values.push(Value::Null);
                }
                ObjectBuilder::new()
                    .schema_type(types(Type::String, nullable))
                    .enum_values(Some(values))
                    .default(default)
                    .description(description)
                    .into()
            }
            Kind::Flag { .. } => ObjectBuilder::new()
                .schema_type(types(Type::Boolean, nullable))
                .default(default)
                .description(description)
                .into(),
            Kind::Text(rule) => ObjectBuilder::new()
                .schema_type(types(Type::String, nullable))
                .max_length(Some(rule.max_chars))
                .pattern(Some(rules::NO_CONTROL_PATTERN))
                .description(description)
                .into(),
            Kind::List(rule) => {
                let item_path = format!("{}[]", field.path);
                let mut items = self.object(&item_path, Vec::new());
                if let (Schema::Object(o), Some(item)) = (&mut items, self.field(&item_path)) {
                    o.description = Some(item.about.to_owned());
                }
                ArrayBuilder::new()
                    .schema_type(types(Type::Array, nullable))
                    .items(RefOr::T(items))
                    .max_items(Some(rule.max_items))
                    .description(description)
                    .into()
            }
            Kind::Object { tag: None, .. } => {
                let mut object = self.object(field.path, Vec::new());
                if let Schema::Object(o) = &mut object {
                    o.schema_type = types(Type::Object, nullable);
                    o.default = default;
                    o.description = description;
                }
                object
            }
            Kind::Object { tag: Some(tag), .. } => self.variants(field, tag, default, description),
            Kind::Matrix { cell, .. } => {
                let cell = Field { kind: Kind::Number(*cell), ..field.clone() };
                let mut cell = self.schema(&cell);
                if let Schema::Object(o) = &mut cell {
                    o.description = None;
                }
                let row =
                    ArrayBuilder::new().items(RefOr::T(cell)).min_items(Some(3)).max_items(Some(3));
                ArrayBuilder::new()
                    .schema_type(types(Type::Array, nullable))
                    .items(row)
                    .min_items(Some(3))
                    .max_items(Some(3))
                    .default(default)
                    .description(description)
                    .into()
            }
        }
    }

    /// One object per value of the `tag` member, each taking only its own parameters.
    fn variants(
        &self,
        field: &Field,
        tag: &str,
        default: Option<Value>,
        description: Option<String>,
    ) -> Schema {
        let tag_path = format!("{}.{tag}", field.path);
        let names = match self.field(&tag_path).map(|f| &f.kind) {
            Some(Kind::Choice { names, .. }) => names.clone(),
            _ => Vec::new(),
        };
        let mut one_of = OneOfBuilder::new().default(default).description(description);
        for name in names {
            let others: Vec<&str> = self
                .children(field.path)
                .filter(|c| c.path != tag_path && !c.only_for().names().contains(&name))
                .map(|c| c.path)
                .collect();
            let variant = match self.object(field.path, others) {
                Schema::Object(mut o) => {
                    o.properties.insert(
                        tag.to_owned(),
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some([name]))
                            .into(),
                    );
                    o.title = Some(name.to_owned());
                    Schema::Object(o)
                }
                other => other,
            };
            one_of = one_of.item(variant);
        }
        one_of.item(ObjectBuilder::new().schema_type(Type::Null)).into()
    }

    fn max(&self, limit: Limit) -> u64 {
        match limit {
            Limit::Fixed(max) => max,
            Limit::TableYears => u64::from(rules::table_years()),
            Limit::Scenarios => u64::from(self.limits.max_scenarios),
            // The loosest bound; the description says it is `years`.
            Limit::Horizon => u64::from(MAX_YEARS),
        }
    }
}

/// What the field is, and the rules of it that its schema cannot carry.
fn description(field: &Field) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !field.about.is_empty() {
        parts.push(field.about.to_owned());
    }
    if let Kind::Integer(rule) = &field.kind {
        if rule.max == Limit::Horizon {
            parts.push("At most `years`.".to_owned());
        }
        if let rules::IntegerDefault::Horizon = rule.default {
            parts.push("Default: `years`.".to_owned());
        }
        if let rules::IntegerDefault::Absent(words) = rule.default {
            parts.push(format!("Left out: {words}."));
        }
    }
    let only_for = field.only_for().names();
    if !only_for.is_empty() {
        let names: Vec<String> = only_for.iter().map(|n| format!("`{n}`")).collect();
        parts.push(format!("Only with {}.", names.join(", ")));
    }
    for rule in field.cross_rules() {
        parts.push(format!("Must be: {}.", rule.rule));
    }
    parts.join(" ")
}
