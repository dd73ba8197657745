def migrate(cr, version):
    # 4 parallel requests was the old default: it capped a number at 4 / latency
    # messages per second. The field is now a ceiling; the queue adapts below it.
    cr.execute(
        "UPDATE whatsapp_account SET max_concurrency = 100 WHERE max_concurrency = 4"
    )
