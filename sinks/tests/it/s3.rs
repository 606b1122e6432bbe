//! The exactly-once writer on an S3 API (moto's server, started here on a free port): the
//! `s3://` scheme is wired through object_store, commits and positions work, and SQL reads back.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adit_sinks::{Maintenance, TableStore};
use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::tables::{first_row, open};

struct S3Server(Child);

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_s3() -> (S3Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 not found: scripts/setup.sh installs it with moto[server]");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto's S3 server did not start: scripts/setup.sh installs it (pip install 'moto[server]')"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (S3Server(child), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_work_on_an_s3_api() {
    let (_server, port) = start_s3();
    let endpoint = format!("http://127.0.0.1:{port}");
    // Create the bucket with a plain S3 PUT.
    let status = reqwest::Client::new()
        .put(format!("{endpoint}/adit"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "create bucket: {status}");
    let options: HashMap<String, String> = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
        ("aws_allow_http", "true"),
        ("aws_conditional_put", "etag"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let store = TableStore::new("s3://adit/tables", options).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
    ]));
    let batch = |seqs: &[i64]| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    seqs.iter().map(|s| format!("r{s}")).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(seqs.to_vec())),
            ],
        )
        .unwrap()
    };
    let mut t = open(&store, "events", &schema, &[], Maintenance::default()).await;
    assert!(t.commit(vec![batch(&[1, 2])], 2).await.unwrap());
    assert!(
        !t.commit(vec![batch(&[2])], 2).await.unwrap(),
        "replay skipped"
    );
    let again = open(&store, "events", &schema, &[], Maintenance::default()).await;
    assert_eq!(again.committed(), 2);
    let n = first_row(&store, "events", "SELECT count(*) FROM events").await;
    assert_eq!(n, [2]);
}
