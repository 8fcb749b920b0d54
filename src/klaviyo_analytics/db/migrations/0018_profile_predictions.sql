-- Klaviyo's own predictive analytics per profile (issue 19), read with the profiles stream
-- (`additional-fields[profile]=predictive_analytics`) and shown beside our CLV model. Each
-- column is the value Klaviyo gave, exact (NUMERIC, never float); NULL where Klaviyo gave none
-- or the profile was never read with predictions (stubs). Money may be negative (refunds).
ALTER TABLE klaviyo_profiles
    ADD COLUMN historic_clv                numeric,
    ADD COLUMN predicted_clv               numeric,
    ADD COLUMN total_clv                   numeric,
    ADD COLUMN historic_number_of_orders   numeric,
    ADD COLUMN predicted_number_of_orders  numeric,
    ADD COLUMN average_days_between_orders numeric,
    ADD COLUMN average_order_value         numeric,
    ADD COLUMN churn_probability           numeric
        CONSTRAINT klaviyo_profiles_churn_probability_check
        CHECK (churn_probability BETWEEN 0 AND 1),
    ADD COLUMN expected_date_of_next_order timestamptz;

-- The reader sees profiles through column privileges (0001): predictions are not personal
-- data, and the API's CLV reads join them.
GRANT SELECT (historic_clv, predicted_clv, total_clv, historic_number_of_orders,
              predicted_number_of_orders, average_days_between_orders, average_order_value,
              churn_probability, expected_date_of_next_order)
    ON klaviyo_profiles TO analytics_reader;
