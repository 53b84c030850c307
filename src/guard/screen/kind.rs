//! What screening finds: each kind of finding and the class it belongs to.

/// What a finding belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Credentials and keys.
    Secret,
    /// Personal data.
    Pii,
    /// Instructions aimed at the model, visible or hidden.
    Injection,
}

/// What was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// AWS access key id (`AKIA...`, `ASIA...`).
    AwsAccessKey,
    /// PEM private key block.
    PrivateKey,
    /// JSON Web Token.
    Jwt,
    /// GitHub token (`ghp_...`, `github_pat_...`).
    GithubToken,
    /// Slack token (`xoxb-...`).
    SlackToken,
    /// Stripe secret or restricted key.
    StripeKey,
    /// OpenAI API key (`sk-...`).
    OpenAiKey,
    /// Anthropic API key (`sk-ant-...`).
    AnthropicKey,
    /// Google API key (`AIza...`).
    GoogleApiKey,
    /// A random-looking token of no known format.
    HighEntropy,
    /// Email address.
    Email,
    /// Phone number.
    Phone,
    /// Payment card number.
    Card,
    /// International bank account number.
    Iban,
    /// Prompt-injection phrase.
    Injection,
    /// Zero-width, bidi-control or Unicode tag characters.
    HiddenText,
}

impl Kind {
    /// The class the kind belongs to.
    pub fn class(self) -> Class {
        match self {
            Kind::AwsAccessKey
            | Kind::PrivateKey
            | Kind::Jwt
            | Kind::GithubToken
            | Kind::SlackToken
            | Kind::StripeKey
            | Kind::OpenAiKey
            | Kind::AnthropicKey
            | Kind::GoogleApiKey
            | Kind::HighEntropy => Class::Secret,
            Kind::Email | Kind::Phone | Kind::Card | Kind::Iban => Class::Pii,
            Kind::Injection | Kind::HiddenText => Class::Injection,
        }
    }

    /// Stable snake_case label: used in `[REDACTED:<label>]`, metrics and audit.
    pub fn label(self) -> &'static str {
        match self {
            Kind::AwsAccessKey => "aws_access_key",
            Kind::PrivateKey => "private_key",
            Kind::Jwt => "jwt",
            Kind::GithubToken => "github_token",
            Kind::SlackToken => "slack_token",
            Kind::StripeKey => "stripe_key",
            Kind::OpenAiKey => "openai_key",
            Kind::AnthropicKey => "anthropic_key",
            Kind::GoogleApiKey => "google_api_key",
            Kind::HighEntropy => "high_entropy",
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Card => "card",
            Kind::Iban => "iban",
            Kind::Injection => "injection",
            Kind::HiddenText => "hidden_text",
        }
    }
}
