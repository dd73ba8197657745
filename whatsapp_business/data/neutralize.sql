-- A neutralized copy (staging, test) must neither send nor accept webhooks with
-- production credentials.
UPDATE whatsapp_account
   SET access_token_encrypted = NULL,
       app_secret_encrypted = NULL,
       active = false,
       state = 'not_configured';
UPDATE whatsapp_message SET state = 'cancelled' WHERE state = 'queued';
