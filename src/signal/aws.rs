//! The AWS Auto Scaling backend: mark this instance `Unhealthy`, so that
//! its Auto Scaling group terminates and replaces it.
//!
//! Everything comes from the instance itself, as on any EC2 host: the
//! instance id from the instance metadata service (IMDSv2, a session token
//! first), the region and the credentials from the SDK's default chains
//! (environment, shared config, then IMDS: the region of the placement and
//! the instance profile's role). `AWS_EC2_METADATA_SERVICE_ENDPOINT` and
//! `AWS_ENDPOINT_URL` point them elsewhere (tests, VPC endpoints). Nothing
//! is looked up when the backend is built, so an agent whose metadata
//! service is briefly unreachable still starts; the first successful send
//! caches the client and the instance id (the SDK refreshes the role's
//! credentials by itself).
//!
//! The request is `SetInstanceHealth(InstanceId, HealthStatus=Unhealthy,
//! ShouldRespectGracePeriod)`: idempotent, so a retry after a lost answer
//! does no harm. A failure reports the AWS error code and message (e.g.
//! `AccessDenied`, `SignatureDoesNotMatch`) and is retried by the
//! dispatcher; credentials never appear in it.
//!
//! Config: `should_respect_grace_period` (default false); no `timeout` (a
//! send is bounded by its own). The config is read in every build; the
//! client needs the cargo feature `aws`, and without it `driftd validate`
//! and `driftd run` refuse the backend.

#[cfg(not(feature = "aws"))]
use super::backend::without_feature;
#[cfg(feature = "aws")]
use super::backend::SendFuture;
use super::backend::{Backend, BackendSpec, BackendType};
#[cfg(feature = "aws")]
use super::Signal;
use crate::spec::Table;
#[cfg(feature = "aws")]
use aws_config::{imds, provider_config::ProviderConfig, BehaviorVersion};
#[cfg(feature = "aws")]
use aws_sdk_autoscaling::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
#[cfg(feature = "aws")]
use aws_sdk_autoscaling::operation::RequestId;
#[cfg(feature = "aws")]
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use std::time::Duration;
#[cfg(feature = "aws")]
use tokio::sync::OnceCell;

/// `type = "aws-autoscaling"`.
pub static TYPE: BackendType = BackendType {
    name: "aws-autoscaling",
    timeout: None,
    example: "",
    parse,
};

/// The Auto Scaling backend's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoScalingSpec {
    /// Let the group's health check grace period delay the replacement.
    pub should_respect_grace_period: bool,
}

fn parse(t: &mut Table<'_>, _timeout: Duration) -> Option<Box<dyn BackendSpec>> {
    Some(Box::new(AutoScalingSpec {
        should_respect_grace_period: t.take("should_respect_grace_period").unwrap_or(false),
    }))
}

impl BackendSpec for AutoScalingSpec {
    fn kind(&self) -> &'static str {
        TYPE.name
    }

    /// Nothing is read before the first send: the feature is all.
    #[cfg(feature = "aws")]
    fn preflight(&self) -> Result<String, String> {
        Ok(String::new())
    }

    #[cfg(not(feature = "aws"))]
    fn preflight(&self) -> Result<String, String> {
        Err(without_feature("aws"))
    }

    #[cfg(feature = "aws")]
    fn build(&self, name: &str) -> Result<Box<dyn Backend>, String> {
        Ok(Box::new(AutoScaling::new(
            name,
            self.should_respect_grace_period,
        )))
    }

    #[cfg(not(feature = "aws"))]
    fn build(&self, _name: &str) -> Result<Box<dyn Backend>, String> {
        Err(without_feature("aws"))
    }
}

/// The longest one send may take, metadata look-ups and SDK retries
/// included (the dispatcher sends one item at a time, so a hung request
/// must not stall the others).
#[cfg(feature = "aws")]
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(feature = "aws")]
const NO_REGION: &str = "no AWS region: none in the environment (AWS_REGION), \
                         the shared config or the instance metadata service";

/// The health status that makes the group replace the instance.
#[cfg(feature = "aws")]
const UNHEALTHY: &str = "Unhealthy";

/// What the first successful send found out.
#[cfg(feature = "aws")]
struct Ready {
    client: aws_sdk_autoscaling::Client,
    instance_id: String,
}

#[cfg(feature = "aws")]
pub struct AutoScaling {
    name: String,
    should_respect_grace_period: bool,
    ready: OnceCell<Ready>,
}

#[cfg(feature = "aws")]
impl AutoScaling {
    /// No IO here: the metadata service is asked on the first send.
    pub fn new(name: &str, should_respect_grace_period: bool) -> AutoScaling {
        AutoScaling {
            name: name.to_string(),
            should_respect_grace_period,
            ready: OnceCell::new(),
        }
    }

    /// The instance id from IMDSv2 and a client for the region of the
    /// default chain (which asks IMDS when neither the environment nor the
    /// shared config names one).
    async fn connect() -> Result<Ready, String> {
        // rustls with ring (already in the build for the webhook), not the
        // SDK's default aws-lc, which would add a C library to the build.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let imds = imds::Client::builder()
            .configure(&ProviderConfig::default().with_http_client(http.clone()))
            .build();
        let instance_id = imds
            .get("/latest/meta-data/instance-id")
            .await
            .map_err(|e| {
                format!(
                    "instance id from the instance metadata service: {}",
                    DisplayErrorContext(&e)
                )
            })?;
        let instance_id = instance_id.as_ref().trim().to_string();
        if !instance_id.starts_with("i-") {
            return Err(format!(
                "the instance metadata service gave `{instance_id}`, not an instance id"
            ));
        }
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .load()
            .await;
        if config.region().is_none() {
            return Err(NO_REGION.into());
        }
        Ok(Ready {
            client: aws_sdk_autoscaling::Client::new(&config),
            instance_id,
        })
    }

    async fn set_unhealthy(&self) -> Result<String, String> {
        let ready = self.ready.get_or_try_init(Self::connect).await?;
        let out = ready
            .client
            .set_instance_health()
            .instance_id(&ready.instance_id)
            .health_status(UNHEALTHY)
            .should_respect_grace_period(self.should_respect_grace_period)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "SetInstanceHealth for {}: {}",
                    ready.instance_id,
                    describe_error(&e)
                )
            })?;
        Ok(format!(
            "SetInstanceHealth {UNHEALTHY} for {} (request id {})",
            ready.instance_id,
            out.request_id().unwrap_or("unknown")
        ))
    }

    async fn send_bounded(&self) -> Result<String, String> {
        tokio::time::timeout(SEND_TIMEOUT, self.set_unhealthy())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {SEND_TIMEOUT:?}")))
    }
}

/// An SDK error in a line: `HTTP 403: SignatureDoesNotMatch: <message>
/// (request id ...)` when AWS answered, else the error's chain (no
/// answer: connection, timeout, credentials). Neither holds credentials:
/// the SDK never puts them in errors and AWS never echoes them.
#[cfg(feature = "aws")]
fn describe_error<E>(e: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let Some(raw) = e.raw_response() else {
        return DisplayErrorContext(e).to_string();
    };
    let request_id = e
        .request_id()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default();
    // The SDK parses `<ErrorResponse><Error>`; some endpoints (moto's
    // authentication errors, proxies) wrap it differently: read the code
    // and message from the body then.
    let (code, message) = match e.code() {
        Some(code) => (Some(code.to_string()), e.message().map(str::to_string)),
        None => {
            let body = raw.body().bytes().map(String::from_utf8_lossy);
            let body = body.as_deref().unwrap_or("");
            (xml_text(body, "Code"), xml_text(body, "Message"))
        }
    };
    let status = raw.status().as_u16();
    match code {
        Some(code) => format!(
            "HTTP {status}: {code}: {}{request_id}",
            message.as_deref().unwrap_or("(no message)")
        ),
        None => format!("HTTP {status}: no AWS error code in the answer{request_id}"),
    }
}

/// The text of the first `<tag>` element of an XML document (entities of
/// the five predefined kinds decoded, at most 300 characters).
#[cfg(feature = "aws")]
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    let text = xml[start..start + len]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(300).collect())
}

#[cfg(feature = "aws")]
impl Backend for AutoScaling {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "aws-autoscaling"
    }

    fn send<'a>(&'a self, _signal: &'a Signal) -> SendFuture<'a> {
        Box::pin(self.send_bounded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(respect: bool) -> AutoScalingSpec {
        AutoScalingSpec {
            should_respect_grace_period: respect,
        }
    }

    #[cfg(not(feature = "aws"))]
    #[test]
    fn without_the_feature_the_config_is_read_but_refused() {
        let msg = "this driftd was built without the `aws` feature";
        assert_eq!(spec(true).preflight().unwrap_err(), msg);
        assert_eq!(spec(true).build("asg").err().unwrap(), msg);
    }

    #[cfg(feature = "aws")]
    #[test]
    fn build_does_no_io() {
        assert!(spec(true).preflight().is_ok());
        let b = spec(true).build("asg").unwrap();
        assert_eq!((b.name(), b.kind()), ("asg", "aws-autoscaling"));
    }

    #[cfg(feature = "aws")]
    #[test]
    fn new_does_no_io() {
        // Outside any runtime and with no metadata service: must not block
        // or fail.
        let b = AutoScaling::new("asg", true);
        assert_eq!(b.name(), "asg");
        assert_eq!(b.kind(), "aws-autoscaling");
        assert!(b.should_respect_grace_period);
        assert!(b.ready.get().is_none());
    }

    #[cfg(feature = "aws")]
    #[test]
    fn error_code_and_message_from_either_xml_shape() {
        // awsQuery, as AWS answers.
        let aws = r#"<ErrorResponse xmlns="https://autoscaling.amazonaws.com/doc/2011-01-01/">
          <Error><Type>Sender</Type><Code>AccessDenied</Code>
          <Message>User: arn:aws:sts::1:assumed-role/r/i is not authorized to perform: autoscaling:SetInstanceHealth</Message>
          </Error><RequestId>abc</RequestId></ErrorResponse>"#;
        assert_eq!(xml_text(aws, "Code").as_deref(), Some("AccessDenied"));
        assert!(xml_text(aws, "Message")
            .unwrap()
            .ends_with("autoscaling:SetInstanceHealth"));
        // moto's authentication errors (an extra <Errors>).
        let moto = "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error>\
            <Code>SignatureDoesNotMatch</Code><Message>a &amp; b &lt;c&gt;</Message>\
            </Error></Errors></ErrorResponse>";
        assert_eq!(
            xml_text(moto, "Code").as_deref(),
            Some("SignatureDoesNotMatch")
        );
        assert_eq!(xml_text(moto, "Message").as_deref(), Some("a & b <c>"));
        assert_eq!(xml_text("<Code></Code>", "Code"), None);
        assert_eq!(xml_text("not xml", "Code"), None);
        assert_eq!(xml_text("<Code>unterminated", "Code"), None);
    }
}
